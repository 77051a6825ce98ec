// `qat eval`: the held-out loss and perplexity of a run's latest checkpoint, a config's model or a
// model file; with --reference, the fidelity report against a reference model (by default the
// run's starting model): perplexity of both, KL divergence, Δp and top-1 agreement, computed as
// llama-perplexity --kl-divergence does (trainers/fidelity.h).
#include "recipes/eval_command.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "qat/models/llama.h"
#include "recipes/methods.h"
#include "recipes/train_data.h"
#include "trainers/checkpoint.h"
#include "trainers/dist.h"
#include "trainers/fidelity.h"
#include "trainers/metrics/format.h"
#include "trainers/model_state.h"
#include "trainers/trainer.h"

namespace fs = std::filesystem;

namespace qat::recipes {
namespace {

struct EvalOptions {
  std::string target;  // a run directory, a checkpoint, a recipe config or a model file
  std::vector<std::string> overrides;
  int64_t sequences = -1;
  // Fidelity (--reference given): "" = the run's starting model.
  std::optional<std::string> reference;
  std::string text;       // a text file to score; empty: the held-out documents
  std::string save_text;  // write the scored text here (for llama-perplexity -f)
  std::string json;       // write the report as JSON here
  train::FidelityOptions fidelity;
};

bool is_model_path(const std::string& path) {
  return (path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) ||
         (fs::is_directory(path) && fs::exists(fs::path(path) / "config.json"));
}

// The model to evaluate: a run (or checkpoint) rebuilt from its saved config and weights, a
// recipe config's model, or a model file taken as it is (method full).
struct Target {
  RecipeConfig cfg;
  models::Pretrained model;
};

RecipeConfig run_config(const std::string& dir, const std::vector<std::string>& overrides,
                        const train::CheckpointData& ckpt) {
  RecipeConfig cfg = parse_recipe_config(ckpt.state.at("config").get<std::string>(),
                                         dir + " (saved config)", overrides);
  const bool device_given =
      std::any_of(overrides.begin(), overrides.end(),
                  [](const std::string& kv) { return kv.rfind("train.device=", 0) == 0; });
  if (cfg.train.device == train::Device::kCuda && !at::hasCUDA() && !device_given) {
    // A run trained on a GPU, read where there is none: its checkpoint holds CPU tensors, so
    // evaluate here in float32 rather than fail on the saved device.
    std::cerr << "note: " << dir << " was trained with train.device=cuda and this machine has no "
              << "CUDA device: evaluating on the CPU in float32 (bf16 autocast off), so the loss "
              << "can differ from the run's own eval in the last digits\n";
    cfg.train.device = train::Device::kCpu;
    cfg.train.autocast = train::Autocast::kOff;
    cfg.model.dtype = ModelDtype::kFp32;
  }
  return cfg;
}

Target load_target(const EvalOptions& o) {
  if (is_model_path(o.target)) {
    RecipeConfig cfg = parse_recipe_config("method: full\nmodel: {path: '" + o.target + "'}\n",
                                           o.target, o.overrides);
    models::Pretrained p = build_model(cfg);
    return {std::move(cfg), std::move(p)};
  }
  if (fs::is_directory(o.target)) {
    const train::CheckpointData ckpt = train::load_checkpoint(o.target);
    RecipeConfig cfg = run_config(o.target, o.overrides, ckpt);
    models::Pretrained p = build_model(cfg);
    train::load_training_state(*p.model, ckpt.model);
    return {std::move(cfg), std::move(p)};
  }
  RecipeConfig cfg = load_recipe_config(o.target, o.overrides);
  models::Pretrained p = build_model(cfg);
  return {std::move(cfg), std::move(p)};
}

int eval_loss(const EvalOptions& o, Target& t) {
  train::Communicator comm;
  TrainData data = load_train_data(t.cfg, *t.model.tokenizer, t.model.chat_template);
  const int64_t n = o.sequences >= 0 ? o.sequences : t.cfg.eval.sequences;
  const train::EvalResult r = train::evaluate(*t.model.model, data.heldout, t.cfg.train.micro_batch,
                                              comm, n, t.cfg.train.bf16());
  std::cout << "eval: loss " << train::format_fixed(r.loss, 4) << "  perplexity "
            << train::format_fixed(r.perplexity, 3) << "  (" << r.tokens << " tokens, "
            << data.description << ")\n";
  return 0;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "--text: cannot open ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Whether the tokenizer starts a text with BOS (llama.cpp then puts BOS first in every chunk).
std::optional<int32_t> leading_bos(const data::Tokenizer& tok) {
  const std::vector<int32_t> with = tok.encode("a", true, false);
  const std::vector<int32_t> without = tok.encode("a", false, false);
  if (tok.bos_id() && with.size() > without.size() && with.front() == *tok.bos_id())
    return tok.bos_id();
  return std::nullopt;
}

int eval_fidelity(const EvalOptions& o, Target& t) {
  RecipeConfig ref_cfg = t.cfg;  // the reference: unquantized, method full
  ref_cfg.method = Method::kFull;
  ref_cfg.model.dtype = ModelDtype::kFp32;
  if (!o.reference->empty()) ref_cfg.model.path = *o.reference;
  const std::string ref_name = resolve_model_path(ref_cfg.model.path);
  models::Pretrained ref = build_model(ref_cfg);
  const std::string text = o.text.empty() ? split_text(t.cfg, Split::kHeldout) : read_text(o.text);
  if (!o.save_text.empty()) {
    std::ofstream out(o.save_text, std::ios::binary);
    TORCH_CHECK(out && (out << text) && out.flush(), "--save-text: cannot write ", o.save_text);
  }
  const data::Tokenizer& tok = *t.model.tokenizer;
  const std::vector<int32_t> tokens = tok.encode(text, true, /*parse_special=*/false);
  const train::FidelityReport r =
      train::compare_models(*t.model.model, *ref.model, tokens, leading_bos(tok), o.fidelity);
  std::cout << "model:     " << o.target << "\nreference: " << ref_name << "\ntext:      "
            << (o.text.empty() ? "the held-out documents of data.path=" + t.cfg.data.path +
                                     " (data.eval_fraction " +
                                     train::format_fixed(t.cfg.data.eval_fraction, 3) + ")"
                               : o.text)
            << " (" << tokens.size() << " tokens)\n"
            << r.to_text();
  nlohmann::json j = r.to_json();
  j["model"] = o.target;
  j["reference"] = ref_name;
  j["text"] = o.text.empty() ? "heldout" : o.text;
  std::cout << j.dump() << "\n";
  if (!o.json.empty()) {
    std::ofstream out(o.json);
    TORCH_CHECK(out && (out << j.dump(2) << "\n") && out.flush(), "--json: cannot write ", o.json);
  }
  return 0;
}

}  // namespace

nlohmann::json fidelity_json(models::LlamaForCausalLM& model, const std::string& reference,
                             const std::string& text_path, const train::FidelityOptions& options) {
  const models::Pretrained ref = models::load_pretrained(reference);
  TORCH_CHECK(ref.tokenizer, "--reference ", reference, " has no tokenizer to read --text with");
  const std::vector<int32_t> tokens =
      ref.tokenizer->encode(read_text(text_path), true, /*parse_special=*/false);
  nlohmann::json j =
      train::compare_models(model, *ref.model, tokens, leading_bos(*ref.tokenizer), options)
          .to_json();
  j["reference"] = reference;
  j["text"] = text_path;
  return j;
}

namespace {

int run_eval(const EvalOptions& o) {
  Target t = load_target(o);
  return o.reference ? eval_fidelity(o, t) : eval_loss(o, t);
}

struct TextOptions {
  std::string config;
  std::vector<std::string> overrides;
  std::string split = "heldout";
  std::string out;
};

int run_text(const TextOptions& o) {
  const RecipeConfig cfg = load_recipe_config(o.config, o.overrides);
  const std::string text = split_text(cfg, o.split == "train" ? Split::kTrain : Split::kHeldout);
  std::ofstream out(o.out, std::ios::binary);
  TORCH_CHECK(out && (out << text) && out.flush(), "qat text: cannot write ", o.out);
  std::cout << "wrote " << o.out << " (" << text.size() << " bytes, the " << o.split
            << " documents of " << cfg.source << ")\n";
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app, CommandList& commands) {
  auto e = std::make_shared<EvalOptions>();
  auto* eval = app.add_subcommand(
      "eval",
      "Held-out loss of a run, a config's model or a model file; with --reference, how close its "
      "predictions are to a reference model's (KL divergence, as llama-perplexity reports it)");
  eval->add_option("target", e->target,
                   "run directory, checkpoint directory, recipe YAML, or a model (.gguf, HF dir)")
      ->required();
  eval->add_option("overrides", e->overrides, "key=value overrides of the config");
  eval->add_option("--sequences", e->sequences,
                   "held-out sequences to evaluate (default: eval.sequences, 0 = all)");
  auto reference = std::make_shared<std::string>();
  CLI::Option* ref_option =
      eval->add_option("--reference", *reference,
                       "fidelity against this model (.gguf or HF dir); without a value: the "
                       "run's starting model (model.path)")
          ->expected(0, 1);
  eval->add_option("--text", e->text, "fidelity: a text file to score (default: held-out split)")
      ->check(CLI::ExistingFile);
  eval->add_option("--save-text", e->save_text,
                   "fidelity: write the scored text here (to run llama-perplexity -f on it)");
  eval->add_option("--context", e->fidelity.context, "fidelity: tokens per chunk (-c)")
      ->check(CLI::Range(int64_t{4}, int64_t{1} << 20));
  eval->add_option("--chunks", e->fidelity.chunks, "fidelity: at most this many chunks (0 = all)")
      ->check(CLI::NonNegativeNumber);
  eval->add_option("--json", e->json, "fidelity: also write the report as JSON to this file");
  auto t = std::make_shared<TextOptions>();
  auto* text = app.add_subcommand(
      "text",
      "Write a config's training or held-out documents as one text file (the split "
      "`qat train` makes), e.g. for llama-perplexity -f or llama-imatrix -f");
  text->add_option("config", t->config, "recipe YAML")->required()->check(CLI::ExistingFile);
  text->add_option("overrides", t->overrides, "key=value overrides of the config");
  text->add_option("--split", t->split, "heldout (default) or train")
      ->check(CLI::IsMember({"heldout", "train"}));
  text->add_option("--out,-o", t->out, "the text file to write")->required();
  commands.push_back({text, [t] { return run_text(*t); }});

  commands.push_back({eval, [e, reference, ref_option] {
                        if (ref_option->count() > 0) e->reference = *reference;
                        return run_eval(*e);
                      }});
}

}  // namespace qat::recipes
