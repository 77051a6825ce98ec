// Hugging Face exports without quantization metadata: the merged dense checkpoint (every linear's
// weight as the model computes with it, LoRA folded in, in bf16 by default) and the PEFT adapter
// (adapter_config.json + adapter_model.safetensors with PEFT's key names).
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "qat/export/writers.h"
#include "qat/io/safetensors_torch.h"

namespace qat::exporting::detail {

namespace fs = std::filesystem;

void write_hf_merged(Job& job, const std::string& dir) {
  torch::NoGradGuard no_grad;
  const at::ScalarType dt = job.opt.hf_dtype;
  hf_dtype_name(dt);  // validates
  TensorList tensors;
  add_others(job, tensors, dt);
  for (const LinearView& l : job.linears) {
    const at::Tensor merged = l.merged_weight();
    const at::Tensor c = merged.to(dt).contiguous();
    // A base written for adapters to go on top (--no-merge) must be the trained lattice itself.
    TORCH_CHECK(
        job.opt.merge_lora || (!l.fake_quant && !l.nf4) || at::equal(c.to(at::kFloat), merged),
        "export hf --no-merge: the trained ", l.describe(), " weights of '", l.name,
        "' are not all ", hf_dtype_name(dt),
        " values, so adapters over this file would not see the weights they were trained "
        "over; export with --dtype fp32 (fp16 holds them only where every value fits)");
    TensorRecord r = dense_record(l.name + ".weight", c,
                                  l.describe() == "dense" ? "dense" : "merged " + l.describe());
    if (l.describe() != "dense" || dt != merged.scalar_type()) {
      const ErrorStats e = error_stats(merged, c);
      r.max_abs_err = e.max_abs;
      r.rel_fro_err = e.rel_fro;
    }
    job.report.tensors.push_back(std::move(r));
    tensors.emplace_back(l.name + ".weight", c);
    if (l.fake_quant && l.fake_quant->activation_quantizer()) {
      job.report.notes.push_back("'" + l.name +
                                 "': activation fake quant is not part of a dense checkpoint");
    }
    if (l.bias().defined()) add_dense(job, tensors, l.name + ".bias", l.bias(), dt, "bias");
  }
  io::save_safetensors_sharded(dir, tensors, job.opt.max_shard_bytes);
  write_hf_config(dir, job.model.config(), dt);
  const TokenizerSource& tok = job.source.tokenizer;
  if (tok.gguf || !tok.hf_dir.empty()) {
    write_hf_tokenizer(dir, tok, job.model.config());
  } else {
    job.report.notes.push_back("no tokenizer written: the source gave none");
  }
}

namespace {

// The LoRA adapters of a model in PEFT's names, with what adapter_config.json needs to know.
struct PeftAdapters {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::set<std::string> targets;  // projection names (q_proj, ...)
  std::map<int64_t, int> ranks;   // rank -> layers
  std::map<std::string, int64_t> rank_of;
  std::map<std::string, double> scaling_of;
};

PeftAdapters collect_adapters(Job& job) {
  PeftAdapters p;
  for (const LinearView& l : job.linears) {
    if (!l.lora) continue;
    const std::string prefix = "base_model.model." + l.name;
    const at::Tensor a = l.lora->lora_A().contiguous();  // (r, in)
    const at::Tensor b = l.lora->lora_B().contiguous();  // (out, r)
    p.tensors.emplace_back(prefix + ".lora_A.weight", a);
    p.tensors.emplace_back(prefix + ".lora_B.weight", b);
    job.report.tensors.push_back(dense_record(prefix + ".lora_A.weight", a, "lora_A"));
    job.report.tensors.push_back(dense_record(prefix + ".lora_B.weight", b, "lora_B"));
    const size_t dot = l.name.rfind('.');
    p.targets.insert(dot == std::string::npos ? l.name : l.name.substr(dot + 1));
    ++p.ranks[a.size(0)];
    p.rank_of[l.name] = a.size(0);
    p.scaling_of[l.name] = l.lora->scaling();
    if (l.fake_quant || l.nf4) {
      job.report.notes.push_back(
          "'" + l.name + "': the adapter was trained over a " + l.base->name() +
          " base; load it over that base (e.g. the bnb-nf4 export), not a dense one");
    }
  }
  TORCH_CHECK(!p.tensors.empty(),
              "export peft: the model has no LoRA adapters (apply_lora() adds them); ",
              "export the whole model with --format hf or gguf instead");
  return p;
}

// adapter_config.json. r and lora_alpha: the most common rank; PEFT's scaling is alpha/r
// (alpha/sqrt(r) with rsLoRA). Layers whose rank or scaling differ get rank_pattern /
// alpha_pattern entries.
nlohmann::json adapter_config(const Job& job, const PeftAdapters& p) {
  int64_t r = 0;
  int best = -1;
  for (const auto& [rank, n] : p.ranks) {
    if (n > best) best = n, r = rank;
  }
  const std::optional<lora::LoraConfig>& given = job.opt.lora_config;
  const bool rslora = given ? given->use_rslora : false;
  auto alpha_for = [&](double s, int64_t rank) {
    return rslora ? s * std::sqrt(static_cast<double>(rank)) : s * static_cast<double>(rank);
  };
  double alpha = given ? given->alpha : alpha_for(p.scaling_of.begin()->second, r);
  nlohmann::json rank_pattern = nlohmann::json::object(), alpha_pattern = nlohmann::json::object();
  for (const auto& [name, s] : p.scaling_of) {
    const int64_t rk = p.rank_of.at(name);
    if (rk != r) rank_pattern[name] = rk;
    const double a = alpha_for(s, rk);
    if (std::abs(a - alpha) > 1e-9 * std::abs(alpha)) alpha_pattern[name] = a;
  }
  const std::string base =
      !job.opt.base_model_name_or_path.empty() ? job.opt.base_model_name_or_path : job.source.name;
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"base_model_name_or_path", base},
          {"r", r},
          {"lora_alpha", alpha},
          {"lora_dropout", given ? given->dropout : 0.0},
          {"use_rslora", rslora},
          {"use_dora", false},
          {"target_modules", std::vector<std::string>(p.targets.begin(), p.targets.end())},
          {"bias", "none"},
          {"fan_in_fan_out", false},
          {"inference_mode", true},
          {"init_lora_weights", true},
          {"modules_to_save", nullptr},
          {"layers_to_transform", nullptr},
          {"rank_pattern", rank_pattern},
          {"alpha_pattern", alpha_pattern},
          {"revision", nullptr}};
}

}  // namespace

void write_peft(Job& job, const std::string& dir) {
  torch::NoGradGuard no_grad;
  const PeftAdapters adapters = collect_adapters(job);
  const nlohmann::json cfg = adapter_config(job, adapters);
  io::save_safetensors((fs::path(dir) / "adapter_model.safetensors").string(), adapters.tensors);
  write_json((fs::path(dir) / "adapter_config.json").string(), cfg);
}

}  // namespace qat::exporting::detail
