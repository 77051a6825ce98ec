#include "trainers/trainer.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(QAT_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "data/dataset/sampler.h"
#include "qat/models/llama.h"
#include "trainers/autocast.h"
#include "trainers/checkpoint.h"
#include "trainers/grad_sync.h"
#include "trainers/lr_schedule.h"
#include "trainers/metrics/format.h"
#include "trainers/metrics/metrics_log.h"
#include "trainers/metrics/progress_bar.h"
#include "trainers/metrics/tensorboard.h"
#include "trainers/metrics/training_plot.h"
#include "trainers/model_state.h"
#include "trainers/optimizer.h"
#include "trainers/shard.h"

namespace fs = std::filesystem;

namespace qat::train {
namespace {

int64_t count_targets(const at::Tensor& labels) {
  return labels.narrow(1, 1, labels.size(1) - 1).ne(-100).sum().item<int64_t>();
}

at::Tensor rows(const at::Tensor& t, const std::vector<int64_t>& idx, const at::Device& device) {
  return t.index_select(0, at::tensor(idx, at::kLong)).to(device);
}

// The packing information of these rows, if the data is packed.
std::optional<models::PackedInputs> packed_rows(const SequenceSet& data,
                                                const std::vector<int64_t>& idx,
                                                const at::Device& device) {
  if (!data.positions.defined()) return std::nullopt;
  return models::PackedInputs{rows(data.positions, idx, device), rows(data.segments, idx, device)};
}

double peak_memory(const at::Device& device) {
#if defined(QAT_WITH_CUDA)
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
        device.index() < 0 ? c10::cuda::current_device() : device.index());
    return static_cast<double>(stats.allocated_bytes[0].peak);
  }
#endif
  (void)device;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;  // Linux reports KiB
}

}  // namespace

at::Tensor next_token_loss_sum(models::LlamaForCausalLM& model, const Batch& batch) {
  const at::Tensor logits = model.forward(batch.tokens, nullptr, std::nullopt, batch.packed);
  const int64_t vocab = logits.size(-1);
  const at::Tensor pred =
      logits.narrow(1, 0, logits.size(1) - 1).reshape({-1, vocab}).to(at::kFloat);
  const at::Tensor target = batch.labels.narrow(1, 1, batch.labels.size(1) - 1).reshape({-1});
  return at::cross_entropy_loss(pred, target, {}, at::Reduction::Sum, -100);
}

void prepare_output_dir(const std::string& dir) {
  TORCH_CHECK(!dir.empty(), "output_dir is empty: name the run's directory");
  std::error_code ec;
  TORCH_CHECK(!fs::exists(dir, ec) || fs::is_directory(dir, ec), "output_dir: '", dir,
              "' exists and is not a directory (choose another output_dir)");
  fs::create_directories(dir, ec);
  TORCH_CHECK(!ec, "output_dir: cannot create '", dir, "': ", ec.message(),
              " (choose a directory you can write, e.g. output_dir=runs/my-run)");
  // A name of this process's own: ranks sharing the directory probe it at the same time.
  const fs::path probe = fs::path(dir) / (".qat-write-test-" + std::to_string(::getpid()));
  {
    std::ofstream out(probe);
    TORCH_CHECK(out && (out << "ok") && out.flush(), "output_dir: cannot write in '", dir,
                "' (permission denied or read-only; choose another output_dir)");
  }
  fs::remove(probe, ec);
}

EvalResult evaluate(models::LlamaForCausalLM& model, const SequenceSet& data, int64_t batch_size,
                    Communicator& comm, int64_t max_sequences, bool autocast_bf16) {
  TORCH_CHECK(batch_size >= 1, "evaluation batch size must be >= 1");
  const int64_t n = max_sequences > 0 ? std::min(max_sequences, data.size()) : data.size();
  TORCH_CHECK(n > 0,
              "no held-out sequences to evaluate: raise data.eval_fraction or use more data");
  const bool was_training = model.is_training();
  model.eval();
  c10::NoGradGuard no_grad;
  const at::Device device = model.parameters().front().device();
  double loss_sum = 0;
  int64_t count = 0;
  std::vector<int64_t> mine;
  for (int64_t i = comm.rank(); i < n; i += comm.world_size()) mine.push_back(i);
  for (size_t b = 0; b < mine.size(); b += static_cast<size_t>(batch_size)) {
    std::vector<int64_t> idx(
        mine.begin() + static_cast<std::ptrdiff_t>(b),
        mine.begin() + static_cast<std::ptrdiff_t>(std::min(mine.size(), b + batch_size)));
    const at::Tensor labels = rows(data.labels, idx, device);
    AutocastGuard autocast(device.type(), autocast_bf16);
    const auto packed = packed_rows(data, idx, device);
    const Batch batch{rows(data.tokens, idx, device), labels, packed ? &*packed : nullptr};
    loss_sum += next_token_loss_sum(model, batch).item<double>();
    count += count_targets(labels);
  }
  at::Tensor totals = at::tensor({loss_sum, static_cast<double>(count)}, at::kDouble);
  if (device.is_cuda()) totals = totals.to(device);
  comm.all_reduce_sum(totals);
  totals = totals.cpu();
  if (was_training) model.train();
  EvalResult r;
  r.tokens = static_cast<int64_t>(totals[1].item<double>());
  TORCH_CHECK(r.tokens > 0, "the held-out sequences have no target tokens");
  r.loss = totals[0].item<double>() / static_cast<double>(r.tokens);
  r.perplexity = std::exp(r.loss);
  return r;
}

// One fit(): the model, data and optimizer state, and the run's progress. fit() reads as its
// phases: begin (resume or start fresh, open the logs), the step loop (train_step, log_step,
// after_step), finish (last eval and save, summary, plot).
struct Trainer::Impl {
  std::shared_ptr<models::LlamaForCausalLM> model;
  SequenceSet train, eval;
  TrainerConfig cfg;
  Communicator& comm;
  nlohmann::json run_info;
  LossFunction loss_fn;
  at::Device device{at::kCPU};
  bool bf16 = false;
  bool main = false;  // rank 0: writes files and prints
  std::vector<NamedParam> params;
  std::unique_ptr<AdamW> opt;                // train.shard: none
  std::unique_ptr<ShardedOptimizer> shards;  // train.shard: optimizer
  std::unique_ptr<GradSync> sync;
  std::unique_ptr<data::DistributedSampler> sampler;
  LrSchedule schedule;
  fs::path out_dir, ckpt_dir;
  std::string last_checkpoint = "(none yet)";

  // The run in progress.
  int64_t start = 0;                             // the step this call starts from
  std::optional<std::string> resumed_from;       // the checkpoint it resumed from
  std::optional<MetricsWriter> metrics;          // rank 0
  std::optional<TensorBoardWriter> tensorboard;  // rank 0, log.tensorboard: mirrors metrics
  std::unique_ptr<ProgressBar> bar;
  TrainSummary summary;
  double tokens_done = 0;
  int64_t saved_at = -1;  // the step of the last checkpoint written or resumed from
  std::chrono::steady_clock::time_point t0;

  Impl(std::shared_ptr<models::LlamaForCausalLM> m, SequenceSet tr, SequenceSet ev, TrainerConfig c,
       Communicator& cm, nlohmann::json info, LossFunction loss)
      : model(std::move(m)),
        train(std::move(tr)),
        eval(std::move(ev)),
        cfg(std::move(c)),
        comm(cm),
        run_info(std::move(info)),
        loss_fn(std::move(loss)) {
    TORCH_CHECK(loss_fn, "the trainer needs a loss function");
    device = model->parameters().front().device();
    bf16 = resolve_precision(device.is_cuda() ? Device::kCuda : Device::kCpu, cfg.train.autocast,
                             cpu_has_bf16_matmul())
               .bf16;
    main = comm.rank() == 0;
    params = trainable_parameters(*model);
    TORCH_CHECK(!params.empty(),
                "the model has no trainable parameters: check the method and lora.targets");
    AdamWConfig ac;
    ac.beta1 = cfg.train.beta1;
    ac.beta2 = cfg.train.beta2;
    ac.eps = cfg.train.eps;
    ac.weight_decay = cfg.train.weight_decay;
    if (cfg.train.shard == ShardMode::kOptimizer) {
      shards = std::make_unique<ShardedOptimizer>(params, ac, comm);
    } else {
      opt = std::make_unique<AdamW>(params, ac);
      if (comm.distributed()) sync = std::make_unique<GradSync>(params, comm);
    }
    if (shards) {
      summary.optimizer_state_bytes = shards->owned_state_bytes();
    } else {
      for (const auto& p : params)
        summary.optimizer_state_bytes += 3 * static_cast<int64_t>(p.param.nbytes());
    }
    sampler = std::make_unique<data::DistributedSampler>(sampler_config());
    schedule.lr = cfg.train.lr;
    schedule.warmup_steps = cfg.train.warmup_steps;
    schedule.total_steps = cfg.train.steps;
    schedule.min_lr_ratio = cfg.train.min_lr_ratio;
    schedule.kind = cfg.train.schedule;
    schedule.validate();
    out_dir = cfg.output_dir;
    ckpt_dir = out_dir / "checkpoints";
    model->model().set_activation_checkpointing(cfg.train.activation_checkpointing);
  }

  data::SamplerConfig sampler_config() const {
    data::SamplerConfig sc;
    sc.num_sequences = train.size();
    sc.global_batch_size = cfg.global_batch(comm.world_size());
    sc.world_size = comm.world_size();
    sc.rank = comm.rank();
    sc.accumulation_steps = cfg.train.grad_accum;
    sc.seed = static_cast<uint64_t>(cfg.train.seed);
    TORCH_CHECK(train.size() >= sc.global_batch_size, "only ", train.size(),
                " training sequences for a global batch of ", sc.global_batch_size,
                " (train.micro_batch x train.grad_accum x ranks): use more data, a shorter "
                "data.seq_len or a smaller batch");
    return sc;
  }

  std::string failure(int64_t step, const std::string& what) const {
    return "step " + std::to_string(step) + ": " + what +
           "; last good checkpoint: " + last_checkpoint +
           (last_checkpoint == "(none yet)" ? "" : " (rerun the same command to resume from it)");
  }

  // --- begin: resume or start fresh, then open the logs ---------------------------------------

  // The checkpoint to resume from: rank 0 decides, every rank must see it (a shared output_dir).
  std::optional<std::string> choose_checkpoint() {
    const std::optional<std::string> local_latest = latest_checkpoint(ckpt_dir.string());
    if (!cfg.resume && local_latest && main) {
      throw TrainingError(out_dir.string() + " already holds checkpoints (latest " + *local_latest +
                          ") and resume is false: choose a new output_dir or remove the old run");
    }
    at::Tensor chosen = at::scalar_tensor(
        static_cast<int64_t>(cfg.resume && local_latest ? checkpoint_step(*local_latest) : -1),
        at::kLong);
    if (device.is_cuda()) chosen = chosen.to(device);
    comm.broadcast(chosen, 0);
    const int64_t step0 = chosen.cpu().item<int64_t>();
    if (step0 < 0) return std::nullopt;
    const std::string wanted = (ckpt_dir / checkpoint_name(step0)).string();
    TORCH_CHECK(fs::exists(fs::path(wanted) / "trainer_state.json"), "rank ", comm.rank(),
                " cannot see ", wanted,
                " that rank 0 resumes from: output_dir must be shared by all ranks");
    return wanted;
  }

  // Loads a checkpoint after checking it continues this experiment with this batch.
  void restore(const std::string& path) {
    CheckpointData d = load_checkpoint(path);
    if (d.state.contains("config") && cfg.check_same_run)
      cfg.check_same_run(d.state["config"].get<std::string>(), path);
    const int64_t saved_world = d.state.value("world_size", comm.world_size());
    load_training_state(*model, d.model);
    if (shards)
      shards->load_state_dict(d.optimizer);
    else
      opt->load_state_dict(d.optimizer);
    set_rng_state(d.rng);
    start = d.state.at("step").get<int64_t>();
    if (comm.rank() != 0) {
      // Only rank 0's generator is saved: give the other ranks their own stream again.
      at::manual_seed(static_cast<uint64_t>(cfg.train.seed) * 1000003ULL +
                      static_cast<uint64_t>(comm.rank()) + 7919ULL * static_cast<uint64_t>(start));
    }
    TORCH_CHECK(start <= cfg.train.steps, path, " is at step ", start, " but train.steps is ",
                cfg.train.steps, ": raise train.steps to continue, or choose a new output_dir");
    if (d.state.contains("data_cursor")) {
      const data::SamplerCursor cur = data::SamplerCursor::from_json(d.state["data_cursor"].dump());
      const int64_t batch = cfg.global_batch(comm.world_size());
      TORCH_CHECK(!cur.global_batch_size || *cur.global_batch_size == batch, path,
                  " was trained with a global batch of ", cur.global_batch_size.value_or(0), " (",
                  saved_world, " ranks); this run has ", batch, " (", comm.world_size(),
                  " ranks): keep train.micro_batch x train.grad_accum x ranks the same to resume");
      TORCH_CHECK(cur.epoch * sampler->steps_per_epoch() + cur.step == start, path,
                  ": the data cursor does not match the step; was the data changed?");
    }
    last_checkpoint = path;
    resumed_from = path;
    saved_at = start;
    summary.resumed_from = start;
  }

  // A fresh run: identical trainable weights on every rank (rank 0's), a seed per rank.
  void start_fresh() {
    c10::NoGradGuard no_grad;
    for (auto& p : params) comm.broadcast(p.param, 0);
    at::manual_seed(static_cast<uint64_t>(cfg.train.seed) * 1000003ULL +
                    static_cast<uint64_t>(comm.rank()));
  }

  void open_logs() {
    const fs::path metrics_path = out_dir / "metrics.jsonl";
    if (main) {
      std::ofstream(out_dir / "config.yaml") << "# resolved config of this run (qat train)\n"
                                             << cfg.config_yaml;
      metrics = resumed_from ? MetricsWriter::open(metrics_path.string(), start)
                             : MetricsWriter::create(metrics_path.string());
      if (cfg.log.tensorboard) {  // replays what metrics.jsonl kept on resume
        tensorboard = TensorBoardWriter::create((out_dir / "tensorboard").string(),
                                                read_metrics(metrics_path.string()).records);
      }
    }
    ProgressOptions po;
    po.total = cfg.train.steps;
    po.initial_step = start;
    po.enabled = main && cfg.log.progress != Progress::kOff;
    if (cfg.log.progress == Progress::kBar) po.tty = true;
    if (cfg.log.progress == Progress::kLines) po.tty = false;
    bar = std::make_unique<ProgressBar>(po);
    if (resumed_from)
      bar->print("resumed from " + *resumed_from + " at step " + std::to_string(start));
  }

  void begin() {
    prepare_output_dir(out_dir.string());
    if (const std::optional<std::string> path = choose_checkpoint())
      restore(*path);
    else
      start_fresh();
    open_logs();
    t0 = std::chrono::steady_clock::now();
  }

  // One metrics line (rank 0), mirrored to TensorBoard when log.tensorboard is on.
  void write_metrics(int64_t step, const std::string& kind, nlohmann::json fields) {
    Record r;
    r.step = step;
    r.kind = kind;
    r.fields = std::move(fields);
    metrics->write(r);
    if (tensorboard) tensorboard->write(r);
  }

  // --- the step loop ---------------------------------------------------------------------------

  EvalResult run_eval(int64_t step) {
    const EvalResult r =
        evaluate(*model, eval, cfg.train.micro_batch, comm, cfg.eval.sequences, bf16);
    if (main) {
      write_metrics(step, "eval",
                    {{"loss", r.loss}, {"perplexity", r.perplexity}, {"tokens", r.tokens}});
      std::ostringstream line;
      line << "eval  step " << step << "  loss " << format_fixed(r.loss, 4) << "  ppl "
           << format_fixed(r.perplexity, 3) << "  (" << r.tokens << " tokens)";
      bar->print(line.str());
    }
    if (!summary.first_eval) summary.first_eval = r;
    summary.last_eval = r;
    return r;
  }

  struct StepResult {
    double loss = 0, grad_norm = 0, lr = 0, seconds = 0;
  };

  // This rank's micro-batches of optimizer step `step`, and the global number of targets in
  // them (all ranks): the loss denominator on every rank.
  std::pair<std::vector<std::vector<int64_t>>, double> step_batches(int64_t step) {
    const int64_t per_epoch = sampler->steps_per_epoch();
    std::vector<std::vector<int64_t>> micro;
    for (int64_t m = 0; m < cfg.train.grad_accum; ++m)
      micro.push_back(sampler->micro_batch(step / per_epoch, step % per_epoch, m));
    int64_t local_targets = 0;
    for (const auto& idx : micro)
      local_targets += count_targets(train.labels.index_select(0, at::tensor(idx, at::kLong)));
    at::Tensor counts = at::tensor({static_cast<double>(local_targets)}, at::kDouble);
    if (device.is_cuda()) counts = counts.to(device);
    comm.all_reduce_sum(counts);
    const double global_targets = counts.cpu().item<double>();
    TORCH_CHECK(global_targets > 0, "step ", step,
                ": the batch has no target tokens (all labels are -100)");
    return {std::move(micro), global_targets};
  }

  // One optimizer step: forward and backward over the micro-batches (gradients summed over
  // ranks), clip, update. Throws TrainingError on a non-finite loss or gradient norm.
  StepResult train_step(int64_t step) {
    const auto ts = std::chrono::steady_clock::now();
    const auto [micro, global_targets] = step_batches(step);
    if (shards)
      shards->zero_grad();
    else
      opt->zero_grad();
    at::Tensor loss_total = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
    for (size_t m = 0; m < micro.size(); ++m) {
      set_quantizer_steps(*model, step);
      if (sync) sync->prepare(m + 1 == micro.size());
      const auto packed = packed_rows(train, micro[m], device);
      const Batch batch{rows(train.tokens, micro[m], device), rows(train.labels, micro[m], device),
                        packed ? &*packed : nullptr};
      at::Tensor loss;
      {
        AutocastGuard autocast(device.type(), bf16);
        loss = loss_fn(*model, batch) / global_targets;
      }
      loss.backward();
      loss_total += loss.detach().to(at::kDouble);
      tokens_done += static_cast<double>(batch.tokens.numel()) * comm.world_size();
    }
    if (sync) sync->finish();
    if (shards) shards->reduce_gradients();
    comm.all_reduce_sum(loss_total);
    StepResult r;
    r.loss = loss_total.item<double>();
    if (!std::isfinite(r.loss)) {
      throw TrainingError(failure(step + 1, "the loss is " + non_finite(r.loss) +
                                                " (lower train.lr, enable train.max_grad_norm, "
                                                "or check the data)"));
    }
    r.grad_norm = shards ? shards->clip(cfg.train.max_grad_norm)
                         : clip_grad_norm(params, cfg.train.max_grad_norm);
    if (!std::isfinite(r.grad_norm)) {
      throw TrainingError(failure(step + 1, "the gradient norm is " + non_finite(r.grad_norm) +
                                                " although the loss is finite (lower train.lr "
                                                "or check the data)"));
    }
    r.lr = schedule.at(step);
    if (shards)
      shards->step(r.lr);  // and all-gathers the updated pieces
    else
      opt->step(r.lr);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
    return r;
  }

  static std::string non_finite(double v) { return std::isnan(v) ? "NaN" : "infinite"; }

  // Metrics line and progress bar after step `done` (rank 0).
  void log_step(int64_t done, const StepResult& r) {
    if (!main) return;
    const double step_tokens =
        static_cast<double>(cfg.global_batch(comm.world_size()) * train.seq_len());
    const double mem = peak_memory(device);
    if (done % cfg.log.every == 0 || done == cfg.train.steps) {
      write_metrics(done, "train",
                    {{"loss", r.loss},
                     {"lr", r.lr},
                     {"grad_norm", r.grad_norm},
                     {"tokens_per_s", step_tokens / r.seconds},
                     {"step_s", r.seconds},
                     {"peak_mem_bytes", mem}});
    }
    bar->update(done,
                {{"loss", format_fixed(r.loss, 3)},
                 {"lr", format_scientific(r.lr, 1)},
                 {"mem", format_bytes(mem)}},
                step_tokens);
  }

  std::string save(int64_t step) {
    CheckpointData d;
    if (shards) {  // every rank stages its shard; rank 0's save moves them into the checkpoint
      const std::string mine =
          optimizer_shard_path(ckpt_dir.string(), step, comm.rank(), comm.world_size());
      save_optimizer_shard(mine, shards->optimizer_shard());
      comm.barrier();
      for (int r = 0; r < comm.world_size(); ++r)
        d.adopt.push_back(optimizer_shard_path(ckpt_dir.string(), step, r, comm.world_size()));
    }
    if (main) {
      d.model = training_state(*model);
      if (opt) d.optimizer = opt->state_dict();
      d.rng = rng_state(device.is_cuda());
      d.state = nlohmann::json::object();
      d.state["step"] = step;
      data::SamplerCursor cur = sampler->cursor();
      const int64_t per_epoch = sampler->steps_per_epoch();
      cur.epoch = step / per_epoch;
      cur.step = step % per_epoch;
      d.state["data_cursor"] = nlohmann::json::parse(cur.to_json());
      d.state["config"] = cfg.config_yaml;
      d.state["run"] = run_info;
      d.state["world_size"] = comm.world_size();
      last_checkpoint =
          save_checkpoint(ckpt_dir.string(), step, d, static_cast<int>(cfg.checkpoint.keep_last));
    }
    comm.barrier();
    if (!main) last_checkpoint = (ckpt_dir / checkpoint_name(step)).string();
    saved_at = step;
    if (main) bar->print("saved " + last_checkpoint);
    return last_checkpoint;
  }

  // The periodic evaluation and checkpoint after step `done`.
  void after_step(int64_t done) {
    if (cfg.eval.every > 0 && done % cfg.eval.every == 0 && done != cfg.train.steps &&
        eval.size() > 0) {
      run_eval(done);
      model->train();
    }
    if (cfg.checkpoint.every > 0 && done % cfg.checkpoint.every == 0) save(done);
  }

  // A failure inside the loop as the TrainingError the user sees (step, last good checkpoint).
  [[noreturn]] void rethrow_failure(int64_t step) {
    bar->finish();
    try {
      throw;
    } catch (const TrainingError&) {
      throw;
    } catch (const CommError& e) {
      throw TrainingError(failure(step + 1, std::string("lost contact with another rank (") +
                                                e.what() +
                                                "); a rank died, hung or exceeded "
                                                "train.dist_timeout_s=" +
                                                std::to_string(cfg.train.dist_timeout_s)));
    } catch (const c10::OutOfMemoryError&) {
      throw TrainingError(failure(step + 1,
                                  "out of memory: lower train.micro_batch (raise "
                                  "train.grad_accum to keep the batch), shorten data.seq_len or "
                                  "set train.activation_checkpointing=true"));
    }
  }

  // --- finish: last evaluation and checkpoint, summary, plot ----------------------------------

  TrainSummary finish(int64_t step) {
    if (step >= cfg.train.steps && eval.size() > 0) run_eval(step);
    if (saved_at != step) save(step);
    bar->finish();
    summary.steps = step;
    summary.train_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    summary.tokens_per_second = summary.train_seconds > 0 ? tokens_done / summary.train_seconds : 0;
    summary.peak_memory_bytes = peak_memory(device);
    summary.last_checkpoint = last_checkpoint;
    if (main && cfg.log.plot) write_plot();
    return summary;
  }

  // loss.png from metrics.jsonl; a build without cairo (QAT_PLOTS) says so instead.
  void write_plot() {
    if (!training_plots_available()) {
      bar->print(
          "note: no loss.png: this build has no training plots (cairo was not found; "
          "metrics.jsonl holds the curve, docs/metrics.md)");
      return;
    }
    const MetricsFile mf = read_metrics((out_dir / "metrics.jsonl").string());
    PlotOptions opts;
    opts.title = cfg.run_name + " training loss";
    write_training_plot(mf.records, (out_dir / "loss.png").string(), opts);
  }
};

Trainer::Trainer(std::shared_ptr<models::LlamaForCausalLM> model, SequenceSet train_data,
                 SequenceSet eval_data, TrainerConfig cfg, Communicator& comm,
                 nlohmann::json run_info, LossFunction loss)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(train_data), std::move(eval_data),
                                   std::move(cfg), comm, std::move(run_info), std::move(loss))) {}

Trainer::~Trainer() = default;

TrainSummary Trainer::fit() {
  Impl& s = *impl_;
  s.begin();
  int64_t step = s.start;
  try {
    if (!s.resumed_from && s.cfg.eval.at_start && s.eval.size() > 0) s.run_eval(0);
    s.model->train();
    for (; step < s.cfg.train.steps; ++step) {
      if (stop_after_ >= 0 && step - s.start >= stop_after_) break;
      const Impl::StepResult r = s.train_step(step);
      s.log_step(step + 1, r);
      s.after_step(step + 1);
      if (on_step_) on_step_(step + 1);
    }
  } catch (const TrainingError&) {
    s.rethrow_failure(step);
  } catch (const CommError&) {
    s.rethrow_failure(step);
  } catch (const c10::OutOfMemoryError&) {
    s.rethrow_failure(step);
  }
  return s.finish(step);
}

}  // namespace qat::train
