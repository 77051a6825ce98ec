#include "recipes/default_job.h"

#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "qat/export/export.h"
#include "qat/io/gguf_file.h"
#include "qat/io/llama_mix.h"
#include "qat/models/llama.h"
#include "qat/models/loader.h"
#include "qat/nn/fake_quant_linear.h"
#include "qat/transforms/gptq.h"
#include "qat/transforms/prepare.h"
#include "recipes/methods.h"
#include "recipes/train_data.h"
#include "trainers/checkpoint.h"
#include "trainers/fidelity.h"
#include "trainers/host_memory.h"
#include "trainers/metrics/format.h"
#include "trainers/metrics/table.h"
#include "trainers/metrics/training_plot.h"
#include "trainers/trainer.h"

namespace fs = std::filesystem;

namespace qat::recipes {
namespace {

struct DefaultJobOptions {
  std::string config = std::string(QAT_SOURCE_DIR) + "/recipes/configs/smollm2-135m/qat.yaml";
  std::string out = "runs/demo";
  int64_t steps = 24;
  int64_t eval_sequences = 16;
  int64_t gptq_calibration = 16;  // 0: no GPTQ row
  std::vector<std::string> overrides;
};

// Whether GPTQ can round this model's fake-quant layers (not the k-quants, LSQ, ...).
bool gptq_applies(models::LlamaForCausalLM& model) {
  try {
    transforms::check_gptq_model(model);
    return true;
  } catch (const c10::Error&) {
    return false;
  }
}

void set_fake_quant(torch::nn::Module& model, bool on) {
  nn::for_each_linear(model, [&](nn::ModuleWithLinears&, const std::string&, const std::string&,
                                 const std::shared_ptr<nn::LinearBase>& layer) {
    if (auto fq = std::dynamic_pointer_cast<nn::FakeQuantLinear>(layer))
      fq->set_fake_quant_enabled(on);
  });
}

// Max |exported - trained| over every fake-quant linear, reading the GGUF back with our loader
// (dequantize, undo llama.cpp's Q/K row order). Returns (layers compared, max difference).
std::pair<int64_t, double> check_export(models::LlamaForCausalLM& trained,
                                        const std::string& gguf) {
  auto exported = models::load_gguf_model(gguf);
  std::map<std::string, std::shared_ptr<nn::LinearBase>> theirs;
  nn::for_each_linear(*exported,
                      [&](nn::ModuleWithLinears&, const std::string&, const std::string& name,
                          const std::shared_ptr<nn::LinearBase>& layer) { theirs[name] = layer; });
  int64_t n = 0;
  double worst = 0;
  c10::NoGradGuard no_grad;
  trained.eval();
  nn::for_each_linear(
      trained, [&](nn::ModuleWithLinears&, const std::string&, const std::string& name,
                   const std::shared_ptr<nn::LinearBase>& layer) {
        if (!std::dynamic_pointer_cast<nn::FakeQuantLinear>(layer)) return;
        const at::Tensor ours = layer->effective_weight().to(at::kFloat).cpu();
        const at::Tensor back = theirs.at(name)->effective_weight().to(at::kFloat).cpu();
        worst = std::max(worst, (ours - back).abs().max().item<double>());
        ++n;
      });
  return {n, worst};
}

// The job's recipe: the QAT config with the job's options as overrides, and its clock.
struct DemoRun {
  const DefaultJobOptions& o;
  RecipeConfig cfg;
  train::Communicator comm;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();

  explicit DemoRun(const DefaultJobOptions& options) : o(options), cfg(config(options)) {
    TORCH_CHECK(cfg.method == Method::kQat, o.config, ": the default job runs method qat, found ",
                to_string(cfg.method));
  }

  static RecipeConfig config(const DefaultJobOptions& o) {
    std::vector<std::string> overrides{
        "output_dir=" + o.out,
        "train.steps=" + std::to_string(o.steps),
        "train.warmup_steps=" + std::to_string(std::min<int64_t>(5, o.steps)),
        "eval.sequences=" + std::to_string(o.eval_sequences),
        "eval.every=0",
        "eval.at_start=false",
        "checkpoint.every=10"};
    overrides.insert(overrides.end(), o.overrides.begin(), o.overrides.end());
    return load_recipe_config(o.config, overrides);
  }

  // The held-out loss as the trainer evaluates it.
  train::EvalResult evaluate(models::LlamaForCausalLM& model, const TrainData& data) {
    return train::evaluate(model, data.heldout, cfg.train.micro_batch, comm, cfg.eval.sequences,
                           cfg.train.bf16());
  }
  // How close `model`'s next-token distributions are to the float model's on the same held-out
  // sequences (KLD, same top-1).
  train::FidelityReport fidelity(models::LlamaForCausalLM& model,
                                 models::LlamaForCausalLM& reference, const TrainData& data) {
    return train::compare_on_sequences(model, reference, data.heldout, cfg.eval.sequences,
                                       cfg.train.micro_batch);
  }

  void log(const std::string& line) const { std::cerr << "[" << elapsed() << "] " << line << "\n"; }
  std::string elapsed() const {
    return train::format_duration(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
};

struct Baselines {
  std::shared_ptr<models::LlamaForCausalLM> reference;  // the float model
  train::EvalResult float_eval, ptq_eval;
  std::optional<train::EvalResult> gptq_eval;
  train::FidelityReport ptq_fidelity;  // vs the float model
  std::optional<train::FidelityReport> gptq_fidelity;
};

// 1. The pretrained model in float, then rounded to nearest in the QAT format (PTQ), then by
// GPTQ on calibration sequences from the training split (the strong baseline): one model.
// Loads the data with the model's tokenizer.
Baselines run_baselines(DemoRun& run, TrainData& data) {
  const RecipeConfig& cfg = run.cfg;
  RecipeConfig float_cfg = cfg;
  float_cfg.method = Method::kFull;
  models::Pretrained base = build_model(float_cfg);
  data = load_train_data(cfg, *base.tokenizer, base.chat_template);
  run.log(base.source + "\n  data: " + data.description);
  Baselines b;
  b.reference = build_model(float_cfg).model;
  b.float_eval = run.evaluate(*base.model, data);
  run.log("float: eval loss " + train::format_fixed(b.float_eval.loss, 4));
  apply_qat(*base.model, cfg);
  b.ptq_eval = run.evaluate(*base.model, data);
  b.ptq_fidelity = run.fidelity(*base.model, *b.reference, data);
  run.log("PTQ " + cfg.quant.weight.name + ": eval loss " +
          train::format_fixed(b.ptq_eval.loss, 4));
  if (run.o.gptq_calibration > 0 && gptq_applies(*base.model)) {
    const auto batches =
        calibration_batches(data.train, run.o.gptq_calibration,
                            static_cast<uint64_t>(cfg.train.seed), cfg.train.micro_batch);
    transforms::gptq_llama(*base.model, batches, {});
    b.gptq_eval = run.evaluate(*base.model, data);
    b.gptq_fidelity = run.fidelity(*base.model, *b.reference, data);
    run.log("PTQ " + cfg.quant.weight.name + " by GPTQ: eval loss " +
            train::format_fixed(b.gptq_eval->loss, 4));
  }
  return b;
}

struct QatResult {
  models::Pretrained model;
  train::TrainSummary summary;
  train::EvalResult eval, float_weights;  // with fake quant, and its latent weights without
  train::FidelityReport fidelity;         // with fake quant, vs the float model
};

// 2. QAT: the same format, fine-tuned (resumes if the output directory holds a checkpoint).
QatResult run_qat(DemoRun& run, const TrainData& data, models::LlamaForCausalLM& reference) {
  const RecipeConfig& cfg = run.cfg;
  QatResult r{build_model(cfg), {}, {}, {}, {}};
  if (!train::latest_checkpoint(cfg.output_dir + "/checkpoints")) {  // quant.init: gptq
    const std::string line = init_quantized_weights(*r.model.model, cfg, data.train);
    if (!line.empty()) run.log(line);
  }
  // Cross-entropy, or distillation from the float model with distill.enabled=true.
  train::Trainer trainer(r.model.model, data.train, data.heldout, cfg.trainer_config(), run.comm,
                         {{"model", r.model.source}, {"data", data.description}},
                         training_loss(cfg));
  train::set_host_memory(train::host_memory_from_env());  // trainers/host_memory.h
  r.summary = trainer.fit();
  r.eval = *r.summary.last_eval;
  set_fake_quant(*r.model.model, false);
  r.float_weights = run.evaluate(*r.model.model, data);
  set_fake_quant(*r.model.model, true);
  r.fidelity = run.fidelity(*r.model.model, reference, data);
  run.log("QAT: eval loss " + train::format_fixed(r.eval.loss, 4) +
          " (its weights without fake quant: " + train::format_fixed(r.float_weights.loss, 4) +
          ")");
  return r;
}

struct ExportResult {
  std::string path;
  exporting::ExportReport report;
  int64_t layers = 0;   // fake-quant layers compared with the file
  double max_diff = 0;  // max |exported - trained| over them
};

// 3. Export to GGUF (blocks straight from the fake quantizers) and read it back.
ExportResult export_gguf(DemoRun& run, QatResult& qat) {
  exporting::ExportSource src;
  src.model = qat.model.model;
  src.tokenizer = exporting::tokenizer_source(qat.model.source, qat.model.chat_template);
  src.name = "SmolLM2-135M-Instruct-QAT-" + run.cfg.quant.weight.name;
  exporting::ExportOptions eo;
  eo.format = exporting::ExportFormat::kGguf;
  eo.out = (fs::path(run.o.out) / "smollm2-135m-qat.gguf").string();
  eo.force = true;
  ExportResult r;
  r.path = eo.out;
  r.report = exporting::export_model(src, eo);
  std::tie(r.layers, r.max_diff) = check_export(*qat.model.model, eo.out);
  return r;
}

// 4. The before/after table.
train::Table results_table(const DemoRun& run, const Baselines& b, const QatResult& qat,
                           int64_t calibration) {
  const RecipeConfig& cfg = run.cfg;
  const double f = b.float_eval.loss;
  train::Table t("SmolLM2-135M-Instruct, held-out " + std::to_string(b.float_eval.tokens) +
                 " tokens, weights " + cfg.quant.weight.name);
  t.add_column("model");
  t.add_column("eval loss", train::NumberFormat::fixed(4));
  t.add_column("perplexity", train::NumberFormat::fixed(3));
  t.add_column("loss vs float", train::NumberFormat::fixed(4).with_sign());
  t.add_column("KLD vs float", train::NumberFormat::fixed(4));
  t.add_column("same top-1", train::NumberFormat::percent(1));
  t.add_row({"float (pretrained)", f, b.float_eval.perplexity, 0.0, 0.0, 1.0});
  // k-quants search their scales (ggml's rule) rather than rounding to nearest from min-max.
  t.add_row({cfg.quant.weight.is_kquant() ? "PTQ (ggml's k-quant search)" : "PTQ round-to-nearest",
             b.ptq_eval.loss, b.ptq_eval.perplexity, b.ptq_eval.loss - f, b.ptq_fidelity.kld_mean,
             b.ptq_fidelity.same_top1});
  if (b.gptq_eval) {
    t.add_row({"PTQ GPTQ (" + std::to_string(calibration) + " calib. seqs)", b.gptq_eval->loss,
               b.gptq_eval->perplexity, b.gptq_eval->loss - f, b.gptq_fidelity->kld_mean,
               b.gptq_fidelity->same_top1});
  }
  t.add_row(
      {std::string(cfg.distill.enabled ? "QAD" : "QAT") + " (" + std::to_string(qat.summary.steps) +
           " steps" +
           (cfg.quant.init != QuantInit::kRtn ? ", from " + to_string(cfg.quant.init) + ")" : ")"),
       qat.eval.loss, qat.eval.perplexity, qat.eval.loss - f, qat.fidelity.kld_mean,
       qat.fidelity.same_top1});
  t.add_separator();
  t.add_row({"QAT weights, fake quant off", qat.float_weights.loss, qat.float_weights.perplexity,
             qat.float_weights.loss - f, "", ""});
  return t;
}

// The lines under the table: what quantization costs each model, training and export figures.
std::string results_notes(const DemoRun& run, const Baselines& b, const QatResult& qat,
                          const ExportResult& e) {
  const double f = b.float_eval.loss;
  std::ostringstream out;
  out << "quantization cost: PTQ " << train::format_fixed(b.ptq_eval.loss - f, 4);
  if (b.gptq_eval) out << ", GPTQ " << train::format_fixed(b.gptq_eval->loss - f, 4);
  if (run.cfg.quant.init == QuantInit::kGptq || run.cfg.quant.init == QuantInit::kAwqGptq) {
    // The latent weights are GPTQ's, not a float model of their own.
    out << " nats/token over their float weights; QAT started from GPTQ's rounding\n";
  } else {
    out << " nats/token over their float weights, QAT "
        << train::format_fixed(qat.eval.loss - qat.float_weights.loss, 4) << " over its own\n";
  }
  const train::TrainSummary& s = qat.summary;
  out << "training: " << s.steps << " steps, " << train::format_rate(s.tokens_per_second, "tok/s")
      << ", peak memory " << train::format_bytes(s.peak_memory_bytes) << "; curve: " << run.o.out
      << (train::training_plots_available() ? "/loss.png\n"
                                            : "/metrics.jsonl (no plots in this build)\n");
  const double expected = static_cast<double>(
      std::max<int64_t>(1, e.report.theoretical_bytes + e.report.metadata_bytes));
  out << "export: " << e.path << " ("
      << train::format_bytes(static_cast<double>(e.report.file_bytes)) << ", "
      << train::format_fixed(100.0 * static_cast<double>(e.report.file_bytes) / expected, 1)
      << "% of theoretical + metadata)\n";
  out << "exported blocks vs trained weights: max |diff| = " << e.max_diff << " over " << e.layers
      << " fake-quant layers" << (e.max_diff == 0 ? " (bit-identical)" : " (MISMATCH)") << "\n";
  out << "run it: llama-completion -m " << e.path << " -p \"In the beginning\" -n 64 -no-cnv\n";
  out << "total time " << run.elapsed() << "\n";
  return out.str();
}

// The default job, top to bottom: config -> PTQ baselines -> QAT -> export -> table.
int run_default_job(const DefaultJobOptions& o) {
  DemoRun run(o);
  TrainData data;
  const Baselines baselines = run_baselines(run, data);
  QatResult qat = run_qat(run, data, *baselines.reference);
  const ExportResult exported = export_gguf(run, qat);
  const int64_t calibration = std::min(o.gptq_calibration, data.train.size());
  const train::Table table = results_table(run, baselines, qat, calibration);
  const std::string notes = results_notes(run, baselines, qat, exported);
  std::cout << "\n" << table.to_text() << "\n" << notes;
  std::ofstream(fs::path(o.out) / "summary.md") << table.to_markdown() << "\n```\n\n"
                                                << table.to_text() << "\n"
                                                << notes << "```\n";
  return exported.max_diff == 0 ? 0 : 1;
}

}  // namespace

void add_default_job_command(CLI::App& app, CommandList& commands) {
  auto o = std::make_shared<DefaultJobOptions>();
  auto* sub = app.add_subcommand("demo",
                                 "The default job: SmolLM2-135M eval -> int4 PTQ vs a short QAT "
                                 "fine-tune -> GGUF export, with "
                                 "a before/after table");
  sub->add_option("--config", o->config, "the QAT recipe to run")->check(CLI::ExistingFile);
  sub->add_option("--out", o->out, "run directory (resumes when it holds a checkpoint)");
  sub->add_option("--steps", o->steps, "QAT fine-tuning steps")->check(CLI::Range(1, 100000));
  sub->add_option("--eval-sequences", o->eval_sequences, "held-out sequences per evaluation")
      ->check(CLI::Range(1, 100000));
  sub->add_option("--gptq-calibration", o->gptq_calibration,
                  "training sequences GPTQ calibrates on for its PTQ row (0: no GPTQ row)")
      ->check(CLI::Range(0, 100000));
  sub->add_option("overrides", o->overrides,
                  "key=value overrides of the recipe (e.g. train.lr=5e-5)");
  commands.push_back({sub, [o] { return run_default_job(*o); }});
}

}  // namespace qat::recipes
