// `qat ptq`: the model of a config with its `quant` section applied and no training -- round to
// nearest for dynamic scales, or observers calibrated on a seeded sample of the training
// sequences for static ones (quant.scale_mode: static); with --method gptq the weights are then
// rounded by GPTQ on the same sample (qat/transforms/gptq.h). It evaluates float vs quantized on
// the held-out data and saves the result as a run (a step-0 checkpoint) that `qat export` and
// `qat eval` read like a trained one.
//
//   qat ptq recipes/configs/smollm2-135m/qat.yaml output_dir=runs/ptq-q4_0
//   qat ptq recipes/configs/smollm2-135m/qat.yaml output_dir=runs/gptq-q4_0 --method gptq
//   qat ptq recipes/configs/smollm2-135m/qat.yaml output_dir=runs/awq-q4_0 --method awq-gptq
//   qat ptq recipes/configs/smollm2-135m/w8a8.yaml output_dir=runs/sq-w8a8 --method smoothquant
//   qat export runs/ptq-q4_0 --format gguf --out smollm2-ptq-q4_0.gguf
#include "recipes/ptq_command.h"

#include <ATen/ATen.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <set>

#include "qat/models/llama.h"
#include "qat/transforms/awq.h"
#include "qat/transforms/gptq.h"
#include "qat/transforms/smoothquant.h"
#include "recipes/methods.h"
#include "recipes/train_data.h"
#include "trainers/checkpoint.h"
#include "trainers/metrics/format.h"
#include "trainers/metrics/table.h"
#include "trainers/model_state.h"
#include "trainers/trainer.h"

namespace qat::recipes {
namespace {

struct PtqOptions {
  std::string config;
  std::vector<std::string> overrides;
  int64_t calibration = 32;
  std::string method = "rtn";
  transforms::GptqConfig gptq;
  transforms::AwqConfig awq;
  transforms::SmoothQuantConfig smooth;
  // The channel scaling before rounding: "awq", "smoothquant" or "" (none).
  std::string scaling() const {
    if (method == "awq" || method == "awq-gptq") return "awq";
    if (method == "smoothquant" || method == "smoothquant-gptq") return "smoothquant";
    return "";
  }
  bool uses_gptq() const {
    return method == "gptq" || method == "awq-gptq" || method == "smoothquant-gptq";
  }
};

// Static scales: run the calibration sequences through the model in training mode (observers
// update, nothing else changes: no gradients are taken).
void calibrate_static_scales(models::LlamaForCausalLM& model,
                             const std::vector<transforms::CalibrationBatch>& batches) {
  const at::Device device = model.parameters().front().device();
  c10::NoGradGuard no_grad;
  model.train();
  for (const auto& b : batches)
    model.forward(b.tokens.to(device), nullptr, std::nullopt, b.packed ? &*b.packed : nullptr);
  train::set_quantizer_steps(model, 0);
}

// GPTQ over the model's fake-quant layers, with a line per layer and a timing.
void round_by_gptq(models::LlamaForCausalLM& model,
                   const std::vector<transforms::CalibrationBatch>& batches, int64_t n,
                   const transforms::GptqConfig& gptq) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto reports = transforms::gptq_llama(
      model, batches, gptq, [](const std::string& line) { std::cerr << line << "\n"; });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "gptq: rounded " << reports.size() << " linears on " << n
            << " calibration sequences in " << train::format_duration(secs) << "\n";
}

// AWQ or SmoothQuant over the model's fake-quant layers, with a line per layer and a timing.
void scale_channels(models::LlamaForCausalLM& model,
                    const std::vector<transforms::CalibrationBatch>& batches, int64_t n,
                    const PtqOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string method = o.scaling();
  const auto log = [](const std::string& line) { std::cerr << line << "\n"; };
  const auto reports = method == "awq"
                           ? transforms::awq_llama(model, batches, o.awq, log)
                           : transforms::smoothquant_llama(model, batches, o.smooth, log);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int scaled = 0;
  std::set<std::string> skipped;
  for (const auto& r : reports) {
    scaled += r.skipped.empty();
    if (!r.skipped.empty())
      skipped.insert(r.name.substr(r.name.find('.', 13) + 1) + ": " + r.skipped);
  }
  std::cerr << method << ": scaled " << scaled << " of " << reports.size() << " groups on " << n
            << " calibration sequences in " << train::format_duration(secs) << "\n";
  for (const auto& why : skipped) std::cerr << method << ": left alone: " << why << "\n";
}

// Saves the model as a step-0 run: export and eval rebuild it from this config and load the
// state. Returns the checkpoint's path.
std::string save_ptq_run(const RecipeConfig& cfg, models::Pretrained& p, const TrainData& data,
                         const std::string& method) {
  train::CheckpointData ckpt;
  ckpt.model = train::training_state(*p.model);
  ckpt.optimizer["step"] = at::scalar_tensor(0, at::kLong);
  ckpt.rng = train::rng_state(false);
  ckpt.state = {{"step", 0},
                {"config", to_yaml(cfg)},
                {"world_size", 1},
                {"run", {{"model", p.source}, {"data", data.description}, {"ptq", method}}}};
  return train::save_checkpoint(cfg.output_dir + "/checkpoints", 0, ckpt, 1);
}

// The PTQ recipe: config -> model with the quant section -> data -> calibration (static scales)
// -> round to nearest (and GPTQ) -> save as a run -> float reference -> table.
int run_ptq(const PtqOptions& o) {
  RecipeConfig cfg = load_recipe_config(o.config, o.overrides);
  TORCH_CHECK(cfg.method == Method::kQat, o.config,
              ": qat ptq quantizes with the `quant` section of a ",
              "method: qat config, found method ", to_string(cfg.method));
  TORCH_CHECK(!train::latest_checkpoint(cfg.output_dir + "/checkpoints"), cfg.output_dir,
              " already holds a run: choose a new output_dir");
  cfg.quant.delay_steps = 0;  // nothing trains: quantize from the first forward
  train::Communicator comm;
  models::Pretrained p = build_model(cfg);  // quant applied
  if (!o.scaling().empty()) transforms::check_scaling_model(*p.model, o.scaling());  // first
  if (o.uses_gptq()) transforms::check_gptq_model(*p.model);
  const TrainData data = load_train_data(cfg, *p.tokenizer, p.chat_template);
  auto evaluate = [&](models::LlamaForCausalLM& m) {
    return train::evaluate(m, data.heldout, cfg.train.micro_batch, comm, cfg.eval.sequences,
                           cfg.train.bf16());
  };
  const int64_t n = std::min<int64_t>(o.calibration, data.train.size());
  const auto batches = calibration_batches(data.train, n, static_cast<uint64_t>(cfg.train.seed),
                                           cfg.train.micro_batch);
  if (cfg.quant.scale_mode == fake_quant::ScaleMode::kStatic) {
    calibrate_static_scales(*p.model, batches);
    std::cerr << "calibrated static scales on " << n << " sequences\n";
  }
  p.model->eval();
  const train::EvalResult rtn = evaluate(*p.model);
  train::EvalResult q = rtn;
  std::optional<train::EvalResult> scaled;
  if (!o.scaling().empty()) {
    scale_channels(*p.model, batches, n, o);
    scaled = q = evaluate(*p.model);
  }
  if (o.uses_gptq()) {
    round_by_gptq(*p.model, batches, n, o.gptq);
    q = evaluate(*p.model);
  }
  const std::string path = save_ptq_run(cfg, p, data, o.method);
  // The float reference on the same sequences.
  RecipeConfig float_cfg = cfg;
  float_cfg.method = Method::kFull;
  p.model.reset();
  const train::EvalResult fl = evaluate(*build_model(float_cfg).model);

  const std::string w = cfg.quant.weight.name;
  train::Table t("PTQ " + w + " (" + fake_quant::to_string(cfg.quant.scale_mode) +
                 " scales), held-out " + std::to_string(q.tokens) + " tokens");
  t.add_column("model");
  t.add_column("eval loss", train::NumberFormat::fixed(4));
  t.add_column("perplexity", train::NumberFormat::fixed(3));
  t.add_row({"float", fl.loss, fl.perplexity});
  t.add_row({"PTQ " + w + " round to nearest", rtn.loss, rtn.perplexity});
  const std::string label = o.scaling() == "awq" ? " AWQ" : " SmoothQuant";
  if (scaled) t.add_row({"PTQ " + w + label, scaled->loss, scaled->perplexity});
  if (o.uses_gptq())
    t.add_row({"PTQ " + w + (scaled ? label + " + GPTQ" : " GPTQ"), q.loss, q.perplexity});
  std::cout << t.to_text() << "saved " << path << " (qat export " << cfg.output_dir
            << " --format ...)\n";
  return 0;
}

}  // namespace

void add_ptq_command(CLI::App& app, CommandList& commands) {
  auto o = std::make_shared<PtqOptions>();
  auto* sub =
      app.add_subcommand("ptq",
                         "Post-training quantization with a config's quant section (no training), "
                         "saved as a run that qat export reads");
  sub->add_option("config", o->config, "recipe YAML with method: qat")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("overrides", o->overrides, "key=value overrides, e.g. quant.weight=gguf_q4_1");
  sub->add_option("--calibration", o->calibration, "calibration sequences (static scales, GPTQ)")
      ->check(CLI::Range(1, 1000000));
  sub->add_option("--method", o->method,
                  "rtn: round to nearest; gptq: GPTQ on the calibration sequences; awq: AWQ's "
                  "per-channel scaling (folded into the norms and linears before), then round to "
                  "nearest; awq-gptq: AWQ, then GPTQ; smoothquant: SmoothQuant's migration of "
                  "activation outliers into the weights (for W8A8), then round to nearest; "
                  "smoothquant-gptq: SmoothQuant, then GPTQ")
      ->check(CLI::IsMember({"rtn", "gptq", "awq", "awq-gptq", "smoothquant", "smoothquant-gptq"}));
  sub->add_option("--gptq-damp", o->gptq.damp,
                  "GPTQ: damping, a fraction of the Hessian's mean diagonal")
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--gptq-act-order", o->gptq.act_order,
                  "GPTQ: round columns by decreasing Hessian diagonal (true, the default) or left "
                  "to right (false)");
  sub->add_option("--gptq-block", o->gptq.block_size, "GPTQ: columns per lazy-batch block")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  sub->add_option("--awq-grid", o->awq.grid, "AWQ: alphas searched in [0, 1)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  sub->add_option("--awq-tokens", o->awq.max_tokens,
                  "AWQ: calibration tokens per group the search uses")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  sub->add_option("--alpha", o->smooth.alpha,
                  "SmoothQuant: migration strength, s = max|X|^alpha / max|W|^(1-alpha)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--smooth-tokens", o->smooth.max_tokens,
                  "SmoothQuant: calibration tokens per group for the activation maxima")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  commands.push_back({sub, [o] { return run_ptq(*o); }});
}

}  // namespace qat::recipes
