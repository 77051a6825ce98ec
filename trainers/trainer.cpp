#include "trainers/trainer.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <sys/resource.h>

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
#include "trainers/checkpoint.h"
#include "trainers/grad_sync.h"
#include "trainers/lr_schedule.h"
#include "trainers/metrics/format.h"
#include "trainers/metrics/metrics_log.h"
#include "trainers/metrics/progress_bar.h"
#include "trainers/metrics/training_plot.h"
#include "trainers/model_state.h"
#include "trainers/optimizer.h"

namespace fs = std::filesystem;

namespace qat::train {
namespace {

// bf16 autocast for CUDA matmuls while alive (thread-local state, restored on exit).
class AutocastGuard {
 public:
  explicit AutocastGuard(bool on) : on_(on) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    prev_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool on_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

// Summed next-token cross-entropy of a batch: position t's logits predict labels[t + 1].
at::Tensor token_loss_sum(models::LlamaForCausalLM& model, const at::Tensor& tokens,
                          const at::Tensor& labels, const models::PackedInputs* packed) {
  const at::Tensor logits = model.forward(tokens, nullptr, std::nullopt, packed);
  const int64_t vocab = logits.size(-1);
  const at::Tensor pred =
      logits.narrow(1, 0, logits.size(1) - 1).reshape({-1, vocab}).to(at::kFloat);
  const at::Tensor target = labels.narrow(1, 1, labels.size(1) - 1).reshape({-1});
  return at::cross_entropy_loss(pred, target, {}, at::Reduction::Sum, -100);
}

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

// The parts of a config that define the experiment (what is trained, on what): a resumed run
// must match them. Steps, schedule, logging and checkpointing may change between sessions.
std::string identity_yaml(TrainConfig c) {
  const TrainConfig defaults;
  c.source.clear();
  c.output_dir = defaults.output_dir;
  c.resume = defaults.resume;
  c.train = defaults.train;
  c.eval = defaults.eval;
  c.checkpoint = defaults.checkpoint;
  c.log = defaults.log;
  return to_yaml(c);
}

}  // namespace

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
    AutocastGuard autocast(autocast_bf16);
    const auto packed = packed_rows(data, idx, device);
    loss_sum +=
        token_loss_sum(model, rows(data.tokens, idx, device), labels, packed ? &*packed : nullptr)
            .item<double>();
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

struct Trainer::Impl {
  std::shared_ptr<models::LlamaForCausalLM> model;
  SequenceSet train, eval;
  TrainConfig cfg;
  Communicator& comm;
  nlohmann::json run_info;
  at::Device device{at::kCPU};
  bool bf16 = false;
  std::vector<NamedParam> params;
  std::unique_ptr<AdamW> opt;
  std::unique_ptr<GradSync> sync;
  std::unique_ptr<data::DistributedSampler> sampler;
  LrSchedule schedule;
  fs::path out_dir, ckpt_dir;
  std::string last_checkpoint = "(none yet)";

  Impl(std::shared_ptr<models::LlamaForCausalLM> m, SequenceSet tr, SequenceSet ev, TrainConfig c,
       Communicator& cm, nlohmann::json info)
      : model(std::move(m)),
        train(std::move(tr)),
        eval(std::move(ev)),
        cfg(std::move(c)),
        comm(cm),
        run_info(std::move(info)) {
    device = model->parameters().front().device();
    bf16 = device.is_cuda() && cfg.train.autocast != "off";
    params = trainable_parameters(*model);
    TORCH_CHECK(!params.empty(),
                "the model has no trainable parameters: check the method and lora.targets");
    AdamWConfig ac;
    ac.beta1 = cfg.train.beta1;
    ac.beta2 = cfg.train.beta2;
    ac.eps = cfg.train.eps;
    ac.weight_decay = cfg.train.weight_decay;
    opt = std::make_unique<AdamW>(params, ac);
    if (comm.distributed()) sync = std::make_unique<GradSync>(params, comm);
    data::SamplerConfig sc;
    sc.num_sequences = train.size();
    sc.global_batch_size = cfg.global_batch(comm.world_size());
    sc.world_size = comm.world_size();
    sc.rank = comm.rank();
    sc.accumulation_steps = cfg.train.grad_accum;
    sc.seed = static_cast<uint64_t>(cfg.train.seed);
    TORCH_CHECK(
        train.size() >= sc.global_batch_size, "only ", train.size(),
        " training sequences for a global batch of ", sc.global_batch_size,
        " (train.micro_batch x train.grad_accum x ranks): use more data, a shorter data.seq_len "
        "or a smaller batch");
    sampler = std::make_unique<data::DistributedSampler>(sc);
    schedule.lr = cfg.train.lr;
    schedule.warmup_steps = cfg.train.warmup_steps;
    schedule.total_steps = cfg.train.steps;
    schedule.min_lr_ratio = cfg.train.min_lr_ratio;
    schedule.kind = schedule_from_name(cfg.train.schedule);
    schedule.validate();
    out_dir = cfg.output_dir;
    ckpt_dir = out_dir / "checkpoints";
    model->model().set_activation_checkpointing(cfg.train.activation_checkpointing);
  }

  std::string failure(int64_t step, const std::string& what) const {
    return "step " + std::to_string(step) + ": " + what +
           "; last good checkpoint: " + last_checkpoint +
           (last_checkpoint == "(none yet)" ? "" : " (rerun the same command to resume from it)");
  }

  std::string save(int64_t step, const nlohmann::json& extra) {
    CheckpointData d;
    if (comm.rank() == 0) {
      d.model = training_state(*model);
      d.optimizer = opt->state_dict();
      d.rng = rng_state(device.is_cuda());
      d.state = extra;
      d.state["step"] = step;
      data::SamplerCursor cur = sampler->cursor();
      const int64_t per_epoch = sampler->steps_per_epoch();
      cur.epoch = step / per_epoch;
      cur.step = step % per_epoch;
      d.state["data_cursor"] = nlohmann::json::parse(cur.to_json());
      d.state["config"] = to_yaml(cfg);
      d.state["run"] = run_info;
      d.state["world_size"] = comm.world_size();
      last_checkpoint =
          save_checkpoint(ckpt_dir.string(), step, d, static_cast<int>(cfg.checkpoint.keep_last));
    }
    comm.barrier();
    if (comm.rank() != 0) last_checkpoint = (ckpt_dir / checkpoint_name(step)).string();
    return last_checkpoint;
  }
};

Trainer::Trainer(std::shared_ptr<models::LlamaForCausalLM> model, SequenceSet train_data,
                 SequenceSet eval_data, TrainConfig cfg, Communicator& comm,
                 nlohmann::json run_info)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(train_data), std::move(eval_data),
                                   std::move(cfg), comm, std::move(run_info))) {}

Trainer::~Trainer() = default;

TrainSummary Trainer::fit() {
  Impl& s = *impl_;
  const TrainConfig& cfg = s.cfg;
  Communicator& comm = s.comm;
  const bool main = comm.rank() == 0;
  TrainSummary summary;
  fs::create_directories(s.out_dir);

  // Start: identical trainable weights on every rank (rank 0's), or the checkpoint's.
  int64_t start = 0;
  std::optional<std::string> resume_from;
  // Rank 0 decides; every rank must see the same checkpoint (a shared output_dir).
  const std::optional<std::string> local_latest = latest_checkpoint(s.ckpt_dir.string());
  if (!cfg.resume && local_latest && main) {
    throw TrainingError(s.out_dir.string() + " already holds checkpoints (latest " + *local_latest +
                        ") and resume is false: choose a new output_dir or remove the old run");
  }
  {
    at::Tensor chosen = at::scalar_tensor(
        static_cast<int64_t>(cfg.resume && local_latest ? checkpoint_step(*local_latest) : -1),
        at::kLong);
    if (s.device.is_cuda()) chosen = chosen.to(s.device);
    comm.broadcast(chosen, 0);
    const int64_t step0 = chosen.cpu().item<int64_t>();
    if (step0 >= 0) {
      const std::string wanted = (s.ckpt_dir / checkpoint_name(step0)).string();
      TORCH_CHECK(std::filesystem::exists(fs::path(wanted) / "trainer_state.json"), "rank ",
                  comm.rank(), " cannot see ", wanted,
                  " that rank 0 resumes from: output_dir must be shared by all ranks");
      resume_from = wanted;
    }
  }
  if (resume_from) {
    CheckpointData d = load_checkpoint(*resume_from);
    // The run must be the same experiment: what the model is and what it trains on.
    if (d.state.contains("config")) {
      const TrainConfig saved = parse_train_config(d.state["config"].get<std::string>(),
                                                   *resume_from + " (saved config)");
      TORCH_CHECK(identity_yaml(saved) == identity_yaml(cfg), *resume_from,
                  " was written by a different run (method, ",
                  "model, quant, lora, nf4 or data differ from this config): use a new output_dir, "
                  "or set resume=false "
                  "in a fresh directory");
    }
    const int64_t saved_world = d.state.value("world_size", comm.world_size());
    load_training_state(*s.model, d.model);
    s.opt->load_state_dict(d.optimizer);
    set_rng_state(d.rng);
    if (comm.rank() != 0) {
      // Only rank 0's generator is saved: give the other ranks their own stream again.
      at::manual_seed(static_cast<uint64_t>(cfg.train.seed) * 1000003ULL +
                      static_cast<uint64_t>(comm.rank()) +
                      7919ULL * static_cast<uint64_t>(d.state.at("step").get<int64_t>()));
    }
    start = d.state.at("step").get<int64_t>();
    TORCH_CHECK(start <= cfg.train.steps, *resume_from, " is at step ", start,
                " but train.steps is ", cfg.train.steps,
                ": raise train.steps to continue, or choose a new output_dir");
    if (d.state.contains("data_cursor")) {
      const data::SamplerCursor cur = data::SamplerCursor::from_json(d.state["data_cursor"].dump());
      TORCH_CHECK(
          !cur.global_batch_size || *cur.global_batch_size == cfg.global_batch(comm.world_size()),
          *resume_from, " was trained with a global batch of ", cur.global_batch_size.value_or(0),
          " (", saved_world, " ranks); this run has ", cfg.global_batch(comm.world_size()), " (",
          comm.world_size(),
          " ranks): keep train.micro_batch x train.grad_accum x ranks the same to resume");
      TORCH_CHECK(cur.epoch * s.sampler->steps_per_epoch() + cur.step == start, *resume_from,
                  ": the data cursor does not match the step; was the data changed?");
    }
    s.last_checkpoint = *resume_from;
    summary.resumed_from = start;
  } else {
    c10::NoGradGuard no_grad;
    for (auto& p : s.params) comm.broadcast(p.param, 0);
    at::manual_seed(static_cast<uint64_t>(cfg.train.seed) * 1000003ULL +
                    static_cast<uint64_t>(comm.rank()));
  }
  if (main) {
    std::ofstream(s.out_dir / "config.yaml") << "# resolved config of this run (qat train)\n"
                                             << to_yaml(cfg);
  }
  const fs::path metrics_path = s.out_dir / "metrics.jsonl";
  std::optional<MetricsWriter> metrics;
  if (main)
    metrics = resume_from ? MetricsWriter::open(metrics_path.string(), start)
                          : MetricsWriter::create(metrics_path.string());

  ProgressOptions po;
  po.total = cfg.train.steps;
  po.initial_step = start;
  po.enabled = main && cfg.log.progress != "off";
  if (cfg.log.progress == "bar") po.tty = true;
  if (cfg.log.progress == "lines") po.tty = false;
  ProgressBar bar(po);
  if (resume_from) bar.print("resumed from " + *resume_from + " at step " + std::to_string(start));

  const int64_t eval_batch = cfg.train.micro_batch;
  auto run_eval = [&](int64_t step) {
    EvalResult r = evaluate(*s.model, s.eval, eval_batch, comm, cfg.eval.sequences, s.bf16);
    if (main) {
      metrics->write(step, "eval",
                     {{"loss", r.loss}, {"perplexity", r.perplexity}, {"tokens", r.tokens}});
      std::ostringstream line;
      line << "eval  step " << step << "  loss " << format_fixed(r.loss, 4) << "  ppl "
           << format_fixed(r.perplexity, 3) << "  (" << r.tokens << " tokens)";
      bar.print(line.str());
    }
    if (!summary.first_eval) summary.first_eval = r;
    summary.last_eval = r;
    return r;
  };

  int64_t step = start;
  const auto t0 = std::chrono::steady_clock::now();
  double tokens_done = 0;
  int64_t saved_at = resume_from ? start : -1;
  try {
    if (!resume_from && cfg.eval.at_start && s.eval.size() > 0) run_eval(0);
    s.model->train();
    const int64_t per_epoch = s.sampler->steps_per_epoch();
    for (; step < cfg.train.steps; ++step) {
      if (stop_after_ >= 0 && step - start >= stop_after_) break;
      const auto ts = std::chrono::steady_clock::now();
      std::vector<std::vector<int64_t>> micro;
      for (int64_t m = 0; m < cfg.train.grad_accum; ++m)
        micro.push_back(s.sampler->micro_batch(step / per_epoch, step % per_epoch, m));
      // The global number of targets this step: the loss denominator on every rank.
      int64_t local_targets = 0;
      for (const auto& idx : micro)
        local_targets += count_targets(s.train.labels.index_select(0, at::tensor(idx, at::kLong)));
      at::Tensor counts = at::tensor({static_cast<double>(local_targets)}, at::kDouble);
      if (s.device.is_cuda()) counts = counts.to(s.device);
      comm.all_reduce_sum(counts);
      const double global_targets = counts.cpu().item<double>();
      TORCH_CHECK(global_targets > 0, "step ", step,
                  ": the batch has no target tokens (all labels are -100)");

      s.opt->zero_grad();
      at::Tensor loss_total =
          at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(s.device));
      for (size_t m = 0; m < micro.size(); ++m) {
        set_quantizer_steps(*s.model, step);
        if (s.sync) s.sync->prepare(m + 1 == micro.size());
        const at::Tensor tokens = rows(s.train.tokens, micro[m], s.device);
        const at::Tensor labels = rows(s.train.labels, micro[m], s.device);
        const auto packed = packed_rows(s.train, micro[m], s.device);
        at::Tensor loss;
        {
          AutocastGuard autocast(s.bf16);
          loss = token_loss_sum(*s.model, tokens, labels, packed ? &*packed : nullptr) /
                 global_targets;
        }
        loss.backward();
        loss_total += loss.detach().to(at::kDouble);
        tokens_done += static_cast<double>(tokens.numel()) * comm.world_size();
      }
      if (s.sync) s.sync->finish();
      comm.all_reduce_sum(loss_total);
      const double loss = loss_total.item<double>();
      if (!std::isfinite(loss)) {
        throw TrainingError(s.failure(
            step + 1, "the loss is " + std::string(std::isnan(loss) ? "NaN" : "infinite") +
                          " (lower train.lr, enable train.max_grad_norm, or check the data)"));
      }
      const double norm = clip_grad_norm(s.params, cfg.train.max_grad_norm);
      if (!std::isfinite(norm)) {
        throw TrainingError(s.failure(
            step + 1, "the gradient norm is " + std::string(std::isnan(norm) ? "NaN" : "infinite") +
                          " although the loss is finite (lower train.lr or check the data)"));
      }
      const double lr = s.schedule.at(step);
      s.opt->step(lr);
      const double dt =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
      const double step_tokens =
          static_cast<double>(cfg.global_batch(comm.world_size()) * s.train.seq_len());
      const int64_t done = step + 1;
      if (main) {
        if (done % cfg.log.every == 0 || done == cfg.train.steps) {
          metrics->write(done, "train",
                         {{"loss", loss},
                          {"lr", lr},
                          {"grad_norm", norm},
                          {"tokens_per_s", step_tokens / dt},
                          {"step_s", dt},
                          {"peak_mem_bytes", peak_memory(s.device)}});
        }
        std::vector<ProgressField> fields{{"loss", format_fixed(loss, 3)},
                                          {"lr", format_scientific(lr, 1)}};
        fields.push_back({"mem", format_bytes(peak_memory(s.device))});
        bar.update(done, fields, step_tokens);
      }
      if (cfg.eval.every > 0 && done % cfg.eval.every == 0 && done != cfg.train.steps &&
          s.eval.size() > 0) {
        run_eval(done);
        s.model->train();
      }
      if (cfg.checkpoint.every > 0 && done % cfg.checkpoint.every == 0) {
        const std::string path = s.save(done, {});
        saved_at = done;
        if (main) bar.print("saved " + path);
      }
      if (on_step_) on_step_(done);
    }
  } catch (const TrainingError&) {
    bar.finish();
    throw;
  } catch (const CommError& e) {
    bar.finish();
    throw TrainingError(
        s.failure(step + 1, std::string("lost contact with another rank (") + e.what() +
                                "); a rank died, hung or exceeded train.dist_timeout_s=" +
                                std::to_string(cfg.train.dist_timeout_s)));
  } catch (const c10::OutOfMemoryError& e) {
    bar.finish();
    throw TrainingError(
        s.failure(step + 1,
                  "out of memory: lower train.micro_batch (raise train.grad_accum to "
                  "keep the batch), shorten data.seq_len or set "
                  "train.activation_checkpointing=true"));
  }
  const bool finished = step >= cfg.train.steps;
  if (finished && s.eval.size() > 0) run_eval(step);
  if (saved_at != step) {
    const std::string path = s.save(step, {});
    if (main) bar.print("saved " + path);
  }
  bar.finish();
  summary.steps = step;
  summary.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  summary.tokens_per_second = summary.train_seconds > 0 ? tokens_done / summary.train_seconds : 0;
  summary.peak_memory_bytes = peak_memory(s.device);
  summary.last_checkpoint = s.last_checkpoint;
  if (main && cfg.log.plot) {
    const MetricsFile mf = read_metrics(metrics_path.string());
    PlotOptions opts;
    opts.title = to_string(cfg.method) + " training loss";
    write_training_plot(mf.records, (s.out_dir / "loss.png").string(), opts);
  }
  return summary;
}

}  // namespace qat::train
