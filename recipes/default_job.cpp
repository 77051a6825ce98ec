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
#include "trainers/metrics/format.h"
#include "trainers/metrics/table.h"
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

int run_default_job(const DefaultJobOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> overrides{
      "output_dir=" + o.out,
      "train.steps=" + std::to_string(o.steps),
      "train.warmup_steps=" + std::to_string(std::min<int64_t>(5, o.steps)),
      "eval.sequences=" + std::to_string(o.eval_sequences),
      "eval.every=0",
      "eval.at_start=false",
      "checkpoint.every=10"};
  overrides.insert(overrides.end(), o.overrides.begin(), o.overrides.end());
  train::TrainConfig cfg = train::load_train_config(o.config, overrides);
  TORCH_CHECK(cfg.method == train::Method::kQat, o.config,
              ": the default job runs method qat, found ", train::to_string(cfg.method));
  train::Communicator comm;
  auto elapsed = [&] {
    return train::format_duration(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };

  // 1. The pretrained model in float, then round-to-nearest in the QAT format (PTQ): one model.
  train::TrainConfig float_cfg = cfg;
  float_cfg.method = train::Method::kFull;
  models::Pretrained base = build_model(float_cfg);
  const TrainData data = load_train_data(cfg, *base.tokenizer, base.chat_template);
  std::cerr << "[" << elapsed() << "] " << base.source << "\n  data: " << data.description << "\n";
  const int64_t eval_batch = cfg.train.micro_batch;
  const bool bf16 =
      cfg.train.device == "cuda" && cfg.train.autocast != "off";  // as the trainer evaluates
  const train::EvalResult float_eval =
      train::evaluate(*base.model, data.heldout, eval_batch, comm, cfg.eval.sequences, bf16);
  std::cerr << "[" << elapsed() << "] float: eval loss " << train::format_fixed(float_eval.loss, 4)
            << "\n";
  apply_qat(*base.model, cfg);
  const train::EvalResult ptq_eval =
      train::evaluate(*base.model, data.heldout, eval_batch, comm, cfg.eval.sequences, bf16);
  std::cerr << "[" << elapsed() << "] PTQ " << cfg.quant.weight << ": eval loss "
            << train::format_fixed(ptq_eval.loss, 4) << "\n";
  // 1b. PTQ with GPTQ on calibration sequences from the training split: the strong baseline.
  std::optional<train::EvalResult> gptq_eval;
  if (o.gptq_calibration > 0 && gptq_applies(*base.model)) {
    const auto batches =
        calibration_batches(data.train, o.gptq_calibration, static_cast<uint64_t>(cfg.train.seed),
                            cfg.train.micro_batch);
    transforms::gptq_llama(*base.model, batches, {});
    gptq_eval =
        train::evaluate(*base.model, data.heldout, eval_batch, comm, cfg.eval.sequences, bf16);
    std::cerr << "[" << elapsed() << "] PTQ " << cfg.quant.weight << " by GPTQ: eval loss "
              << train::format_fixed(gptq_eval->loss, 4) << "\n";
  }
  base.model.reset();

  // 2. QAT: the same format, fine-tuned (resumes if the output directory holds a checkpoint).
  models::Pretrained qat = build_model(cfg);
  if (!train::latest_checkpoint(cfg.output_dir + "/checkpoints")) {  // quant.init: gptq
    const std::string line = init_quantized_weights(*qat.model, cfg, data.train);
    if (!line.empty()) std::cerr << "[" << elapsed() << "] " << line << "\n";
  }
  train::Trainer trainer(qat.model, data.train, data.heldout, cfg, comm,
                         {{"model", qat.source}, {"data", data.description}});
  const train::TrainSummary summary = trainer.fit();
  const train::EvalResult qat_eval = *summary.last_eval;
  set_fake_quant(*qat.model, false);
  const train::EvalResult qat_float =
      train::evaluate(*qat.model, data.heldout, eval_batch, comm, cfg.eval.sequences, bf16);
  set_fake_quant(*qat.model, true);
  std::cerr << "[" << elapsed() << "] QAT: eval loss " << train::format_fixed(qat_eval.loss, 4)
            << " (its weights without fake quant: " << train::format_fixed(qat_float.loss, 4)
            << ")\n";

  // 3. Export to GGUF: Q4_0 blocks straight from the fake quantizers, embeddings Q8_0.
  exporting::ExportSource src;
  src.model = qat.model;
  src.tokenizer = exporting::tokenizer_source(qat.source, qat.chat_template);
  src.name = "SmolLM2-135M-Instruct-QAT-" + cfg.quant.weight;
  exporting::ExportOptions eo;
  eo.format = exporting::ExportFormat::kGguf;
  eo.out = (fs::path(o.out) / "smollm2-135m-qat.gguf").string();
  eo.force = true;
  const exporting::ExportReport report = exporting::export_model(src, eo);
  const auto [layers, max_diff] = check_export(*qat.model, eo.out);

  // 4. The table.
  train::Table t("SmolLM2-135M-Instruct, held-out " + std::to_string(float_eval.tokens) +
                 " tokens, weights " + cfg.quant.weight);
  t.add_column("model");
  t.add_column("eval loss", train::NumberFormat::fixed(4));
  t.add_column("perplexity", train::NumberFormat::fixed(3));
  t.add_column("loss vs float", train::NumberFormat::fixed(4).with_sign());
  t.add_row({"float (pretrained)", float_eval.loss, float_eval.perplexity, 0.0});
  // k-quants search their scales (ggml's rule) rather than rounding to nearest from min-max.
  const bool kquant = io::llama_mix_from_name(cfg.quant.weight) ||
                      scheme::is_kquant(scheme::QuantSpec::from_name(cfg.quant.weight).format);
  t.add_row({kquant ? "PTQ (ggml's k-quant search)" : "PTQ round-to-nearest", ptq_eval.loss,
             ptq_eval.perplexity, ptq_eval.loss - float_eval.loss});
  if (gptq_eval) {
    t.add_row({"PTQ GPTQ (" + std::to_string(std::min(o.gptq_calibration, data.train.size())) +
                   " calib. seqs)",
               gptq_eval->loss, gptq_eval->perplexity, gptq_eval->loss - float_eval.loss});
  }
  t.add_row({"QAT (" + std::to_string(summary.steps) + " steps" +
                 (cfg.quant.init == "gptq" ? ", from GPTQ)" : ")"),
             qat_eval.loss, qat_eval.perplexity, qat_eval.loss - float_eval.loss});
  t.add_separator();
  t.add_row({"QAT weights, fake quant off", qat_float.loss, qat_float.perplexity,
             qat_float.loss - float_eval.loss});
  std::ostringstream out;
  out << "\n" << t.to_text() << "\n";
  out << "quantization cost: PTQ " << train::format_fixed(ptq_eval.loss - float_eval.loss, 4);
  if (gptq_eval) out << ", GPTQ " << train::format_fixed(gptq_eval->loss - float_eval.loss, 4);
  if (cfg.quant.init == "gptq") {  // the latent weights are GPTQ's, not a float model of their own
    out << " nats/token over their float weights; QAT started from GPTQ's rounding\n";
  } else {
    out << " nats/token over their float weights, QAT "
        << train::format_fixed(qat_eval.loss - qat_float.loss, 4) << " over its own\n";
  }
  out << "training: " << summary.steps << " steps, "
      << train::format_rate(summary.tokens_per_second, "tok/s") << ", peak memory "
      << train::format_bytes(summary.peak_memory_bytes) << "; curve: " << o.out << "/loss.png\n";
  out << "export: " << eo.out << " (" << train::format_bytes(static_cast<double>(report.file_bytes))
      << ", "
      << train::format_fixed(100.0 * static_cast<double>(report.file_bytes) /
                                 static_cast<double>(std::max<int64_t>(
                                     1, report.theoretical_bytes + report.metadata_bytes)),
                             1)
      << "% of theoretical + metadata)\n";
  out << "exported blocks vs trained weights: max |diff| = " << max_diff << " over " << layers
      << " fake-quant layers" << (max_diff == 0 ? " (bit-identical)" : " (MISMATCH)") << "\n";
  out << "run it: llama-completion -m " << eo.out << " -p \"In the beginning\" -n 64 -no-cnv\n";
  out << "total time " << elapsed() << "\n";
  std::cout << out.str();
  std::ofstream(fs::path(o.out) / "summary.md") << t.to_markdown() << "\n```\n"
                                                << out.str() << "```\n";
  return max_diff == 0 ? 0 : 1;
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
