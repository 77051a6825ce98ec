// `qat export`: loads a model -- a .gguf file, an HF directory, or a training run (its latest
// checkpoint, rebuilt with the run's own config) -- writes it with qat/export, then prints the
// size report.
// clang-format off
//
//   qat export runs/smollm2-135m-qat --format gguf --out smollm2-qat.gguf   (Q4_0 blocks as trained)
//   qat export runs/smollm2-135m-qlora --format peft --out adapter/
//   qat export runs/smollm2-135m-qat-lora --format gguf --no-merge --out base.gguf  (trained codes)
//   qat export runs/smollm2-135m-qat-lora --format gguf-lora --out adapter.gguf  (llama.cpp --lora)
//   qat export model.gguf --format gguf --gguf-type q4_0 --out model-q4_0.gguf
//   qat export hf_dir --format hf --out merged/         (bf16 safetensors + config + tokenizer)
//   qat export hf_dir --format bnb-nf4 --out nf4/       (bitsandbytes 4-bit, double quant)
//   qat export hf_dir --format ct --group-size 128 --out int4/   (vLLM int4 compressed-tensors)
//   qat export runs/w8a8 --format ct --scheme w8a8 --out w8a8/   (vLLM int8 W8A8)
// clang-format on
#include "recipes/export_command.h"

#include <filesystem>
#include <iostream>
#include <memory>

#include "qat/export/export.h"
#include "qat/io/llama_mix.h"
#include "qat/models/llama.h"
#include "qat/models/pretrained.h"
#include "recipes/config/recipe_config.h"
#include "recipes/eval_command.h"
#include "recipes/methods.h"
#include "trainers/checkpoint.h"
#include "trainers/model_state.h"

namespace qat::recipes {
namespace {

struct ExportArgs {
  std::string model;
  std::string format = "gguf";
  std::string out;
  std::string gguf_type = "q8_0";
  std::string gguf_embed_type = "q8_0";
  std::string dtype = "bf16";
  int64_t group_size = 128;
  std::string ct_scheme = "w4a16";
  int64_t nf4_blocksize = 64;
  bool no_double_quant = false;
  bool requantize = false;
  bool no_merge = false;
  std::string reference, text;  // model card: fidelity against this model on this text
  train::FidelityOptions fidelity;
  bool ollama = false;
  std::string adapter_type = "f32";
  bool force = false;
  std::string base_model;
};

bool is_run(const std::string& path) {
  namespace fs = std::filesystem;
  return fs::is_directory(path) && (fs::exists(fs::path(path) / "trainer_state.json") ||
                                    fs::is_directory(fs::path(path) / "checkpoints"));
}

// A training run: the model its config builds, with the checkpoint's trained state; the
// tokenizer of the base model it started from.
exporting::ExportSource load_run(const std::string& path, exporting::ExportOptions& opt) {
  const std::string ckpt_path = train::resolve_checkpoint(path);
  const train::CheckpointData ckpt = train::load_checkpoint(ckpt_path);
  const RecipeConfig cfg = parse_recipe_config(ckpt.state.at("config").get<std::string>(),
                                               ckpt_path + " (saved config)");
  RecipeConfig cpu_cfg = cfg;
  cpu_cfg.train.device = train::Device::kCpu;
  cpu_cfg.train.autocast = train::Autocast::kOff;
  cpu_cfg.model.dtype = ModelDtype::kFp32;
  models::Pretrained p = build_model(cpu_cfg);
  train::load_training_state(*p.model, ckpt.model);
  std::cerr << "run " << path << ": " << to_string(cfg.method) << " at step "
            << ckpt.state.at("step").get<int64_t>() << " (" << ckpt_path << ")\n";
  opt.card.method = to_string(cfg.method);
  if (cfg.method == Method::kQat || cfg.method == Method::kQatLora)
    opt.card.method += " (fake quant " + cfg.quant.weight.name + ")";
  if (cfg.distill.enabled) opt.card.method += ", distilled from the starting model";
  opt.card.method += ", " + std::to_string(ckpt.state.at("step").get<int64_t>()) + " steps";
  if (cfg.method == Method::kQlora || cfg.method == Method::kQatLora ||
      cfg.method == Method::kLora) {
    opt.lora_config = lora_config(cfg);
  }
  exporting::ExportSource s;
  s.model = p.model;
  s.name = path;
  const std::string base = resolve_model_path(cfg.model.path);
  s.tokenizer = exporting::tokenizer_source(base, p.chat_template);
  if (opt.base_model_name_or_path.empty()) opt.base_model_name_or_path = base;
  opt.card.base_model = base;
  return s;
}

int run_export(const ExportArgs& a) {
  exporting::ExportOptions opt;
  opt.format = exporting::export_format_from_name(a.format);  // checked before the slow load
  opt.out = a.out;
  opt.force = a.force;
  if (auto mix = io::llama_mix_from_name(a.gguf_type)) {
    opt.gguf_mix = *mix;  // llama-quantize's per-tensor types, embeddings included
  } else {
    opt.gguf_type = exporting::gguf_type_from_name(a.gguf_type);
  }
  opt.gguf_embed_type = exporting::gguf_type_from_name(a.gguf_embed_type);
  opt.hf_dtype = parse_dtype_option(a.dtype, {at::kFloat, at::kBFloat16, at::kHalf}, "qat export");
  opt.int4_group_size = a.group_size;
  opt.ct_scheme = exporting::ct_scheme_from_name(a.ct_scheme);
  opt.nf4_blocksize = a.nf4_blocksize;
  opt.nf4_double_quant = !a.no_double_quant;
  opt.requantize = a.requantize;
  opt.merge_lora = !a.no_merge;
  opt.ollama = a.ollama;
  opt.gguf_adapter_type = exporting::gguf_type_from_name(a.adapter_type);
  opt.base_model_name_or_path = a.base_model;
  TORCH_CHECK(!opt.out.empty(), "qat export: --out is required");
  TORCH_CHECK(opt.force || !std::filesystem::exists(opt.out), "qat export: output '", opt.out,
              "' already exists; pass --force to replace it");

  const std::string path = a.model.empty() ? models::default_model_path() : a.model;
  std::cerr << "loading " << path << "\n";
  TORCH_CHECK(a.reference.empty() == a.text.empty(),
              "qat export: --reference and --text go together (the model card's fidelity is "
              "measured against a reference model on a text)");
  TORCH_CHECK(a.reference.empty() || !exporting::is_single_file(opt.format),
              "qat export: --reference measures fidelity for the model card (README.md) of HF "
              "formats; for a GGUF use qat eval FILE.gguf --reference MODEL --text FILE");
  TORCH_CHECK(a.reference.empty() || opt.merge_lora,
              "qat export: --reference measures the model with its adapters, which --no-merge "
              "leaves out of the file; measure the adapter export (--format peft) instead");
  const exporting::ExportSource source =
      is_run(path) ? load_run(path, opt) : exporting::load_export_source(path);
  if (!a.reference.empty()) {
    std::cerr << "fidelity against " << a.reference << " on " << a.text << "\n";
    opt.card.fidelity = fidelity_json(*source.model, a.reference, a.text, a.fidelity);
  }
  const exporting::ExportReport report = exporting::export_model(source, opt);
  std::cout << report.summary();
  return 0;
}

}  // namespace

void add_export_command(CLI::App& app, CommandList& commands) {
  auto args = std::make_shared<ExportArgs>();
  auto* sub =
      app.add_subcommand("export",
                         "Write a model as GGUF (llama.cpp), HF safetensors, a PEFT adapter, "
                         "bitsandbytes NF4 or compressed-tensors W4A16, W8A16, W8A8, FP8 (vLLM)");
  sub->add_option(
      "model", args->model,
      "a training run directory (its latest checkpoint), a .gguf file or a Hugging Face directory "
      "(default: SmolLM2-135M-Instruct)");
  sub->add_option("--format,-f", args->format,
                  "gguf, hf, peft, bnb-nf4, bnb-int8 (LLM.int8), ct (compressed-tensors), "
                  "gguf-lora (llama.cpp --lora)")
      ->capture_default_str();
  sub->add_option("--out,-o", args->out, "output: a .gguf file for gguf, a directory otherwise")
      ->required();
  sub->add_option("--gguf-type", args->gguf_type,
                  "GGUF type of dense/LoRA linears: " + exporting::known_gguf_types() +
                      ", or a mixture: " + io::known_llama_mixes() +
                      " (llama-quantize's per-tensor types, embeddings included)")
      ->capture_default_str();
  sub->add_option("--gguf-embed-type", args->gguf_embed_type, "GGUF type of token_embd and output")
      ->capture_default_str();
  sub->add_option("--dtype", args->dtype,
                  "HF formats: dtype of dense tensors and scales (bf16, fp16, fp32)")
      ->capture_default_str();
  sub->add_option("--scheme", args->ct_scheme,
                  "ct: w4a16 (int4 groups), w8a16 (int8 per channel), w8a8 (int8 weights and "
                  "per-token activations), fp8 (e4m3 weights and per-token activations)")
      ->capture_default_str();
  sub->add_option("--group-size", args->group_size,
                  "ct w4a16: int4 group size for layers not trained in int4")
      ->capture_default_str();
  sub->add_option("--nf4-blocksize", args->nf4_blocksize,
                  "bnb-nf4: blocksize for layers not NF4 already")
      ->capture_default_str();
  sub->add_flag("--no-double-quant", args->no_double_quant,
                "bnb-nf4: store float32 absmax (no double quant)");
  sub->add_flag(
      "--requantize", args->requantize,
      "quantize layers whose fake-quant scheme the format cannot store exactly (error reported)");
  sub->add_flag("--no-merge", args->no_merge,
                "LoRA runs: write the base layers as trained, adapters left out (put --format peft "
                "or gguf-lora on top: the trained function, exactly)");
  sub->add_flag("--ollama", args->ollama,
                "gguf: also write an Ollama Modelfile beside the file (FROM, stop tokens)");
  sub->add_option("--adapter-type", args->adapter_type, "gguf-lora: f32, f16 or bf16")
      ->capture_default_str();
  sub->add_flag("--force", args->force, "replace an existing output");
  sub->add_option("--base-model", args->base_model, "peft: base_model_name_or_path to write");
  sub->add_option("--reference", args->reference,
                  "HF formats: measure KLD/PPL against this model (.gguf or HF dir) for README.md");
  sub->add_option("--text", args->text, "with --reference: the text file to score");
  sub->add_option("--chunks", args->fidelity.chunks,
                  "with --reference: at most this many chunks (0 = all)")
      ->capture_default_str();
  sub->add_option("--context", args->fidelity.context, "with --reference: tokens per chunk")
      ->capture_default_str();
  commands.push_back({sub, [args]() { return run_export(*args); }});
}

}  // namespace qat::recipes
