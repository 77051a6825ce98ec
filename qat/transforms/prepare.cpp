#include "qat/transforms/prepare.h"

#include <fnmatch.h>

#include <set>

#include "qat/nn/quantized_linear.h"

namespace qat::transforms {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

bool any_match(const std::vector<std::string>& patterns, const std::string& name) {
  for (const auto& p : patterns)
    if (name_matches(p, name)) return true;
  return false;
}

void for_each_linear(torch::nn::Module& model, const SlotVisitor& fn) {
  std::vector<std::pair<std::string, std::shared_ptr<nn::ModuleWithLinears>>> parents;
  if (auto* self = dynamic_cast<nn::ModuleWithLinears*>(&model)) {
    parents.emplace_back("", std::shared_ptr<nn::ModuleWithLinears>(self, [](auto*) {}));
  }
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (auto p = std::dynamic_pointer_cast<nn::ModuleWithLinears>(item.value()))
      parents.emplace_back(item.key(), p);
  }
  for (auto& [path, parent] : parents)
    for (const auto& [name, layer] : parent->linears()) fn(*parent, name, join(path, name), layer);
}

bool name_matches(const std::string& pattern, const std::string& name) {
  if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return true;
  const std::string suffix = "*." + pattern;
  return fnmatch(suffix.c_str(), name.c_str(), 0) == 0;
}

std::vector<std::string> prepare(torch::nn::Module& model, const PrepareConfig& cfg) {
  TORCH_CHECK(
      cfg.layer.weight || cfg.layer.activation || cfg.layer.sparsity.enabled,
      "prepare: the layer config quantizes nothing (no weight, no activation, no sparsity)");
  std::vector<std::string> swapped;
  std::set<std::string> in_slots;
  for_each_linear(model, [&](nn::ModuleWithLinears& parent, const std::string& slot,
                             const std::string& full,
                             const std::shared_ptr<nn::LinearBase>& layer) {
    in_slots.insert(full);
    if (!dynamic_cast<nn::Linear*>(layer.get())) return;  // already prepared or not dense
    if (!any_match(cfg.include, full) || any_match(cfg.exclude, full)) return;
    const nn::FakeQuantLinearConfig* use = &cfg.layer;
    const std::optional<nn::FakeQuantLinearConfig> chosen =
        cfg.choose ? cfg.choose(full, *layer) : std::optional<nn::FakeQuantLinearConfig>();
    const std::vector<int64_t> shape{layer->out_features(), layer->in_features()};
    if (chosen) {
      use = &*chosen;
    } else if (cfg.layer.weight && !cfg.layer.weight->spec.groups_divide(shape)) {
      const scheme::QuantSpec& spec = cfg.layer.weight->spec;
      TORCH_CHECK(cfg.fallback, "prepare: linear '", full, "' (in_features ", layer->in_features(),
                  "): the block size ", spec.granularity.group_size, " of ", spec.to_string(),
                  " does not divide the last dimension; set a fallback format for such layers ",
                  "(quant.fallback: llama.cpp falls back from Q4_K to gguf_q5_0, from Q5_K to "
                  "gguf_q5_1, from Q6_K to gguf_q8_0), ",
                  "choose a block size that divides it, or exclude the layer");
      use = &*cfg.fallback;
    }
    parent.replace_linear(slot, std::make_shared<nn::FakeQuantLinear>(*layer, *use));
    swapped.push_back(full);
  });
  // A dense linear the rules select but that no slot holds cannot be swapped: say so.
  for (const auto& item : model.named_modules("", false)) {
    if (!std::dynamic_pointer_cast<nn::Linear>(item.value())) continue;
    const std::string& full = item.key();
    TORCH_CHECK(
        in_slots.count(full) || !any_match(cfg.include, full) || any_match(cfg.exclude, full),
        "prepare: linear '", full, "' matches the rules but its parent does not hold it in a ",
        "swappable slot (derive the parent from qat::nn::ModuleWithLinears and register it ",
        "with register_linear)");
  }
  TORCH_CHECK(!swapped.empty(),
              "prepare: no linear layer matched include=", c10::Join(",", cfg.include),
              " exclude=", c10::Join(",", cfg.exclude));
  return swapped;
}

std::vector<std::string> convert(torch::nn::Module& model) {
  std::vector<std::string> converted;
  for_each_linear(
      model, [&](nn::ModuleWithLinears& parent, const std::string& slot, const std::string& full,
                 const std::shared_ptr<nn::LinearBase>& layer) {
        auto* fq = dynamic_cast<nn::FakeQuantLinear*>(layer.get());
        if (!fq || !fq->weight_quantizer()) return;
        parent.replace_linear(slot, std::make_shared<nn::QuantizedLinear>(*fq));
        converted.push_back(full);
      });
  return converted;
}

}  // namespace qat::transforms
