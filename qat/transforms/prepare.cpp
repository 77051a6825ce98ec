#include "qat/transforms/prepare.h"

#include <set>

#include "qat/nf4/nf4_linear.h"
#include "qat/nn/quantized_linear.h"

namespace qat::transforms {

namespace {

// What a dense linear the rules selected becomes, given its full name.
using MakeLayer = std::function<std::shared_ptr<nn::LinearBase>(const std::string& full,
                                                                const nn::LinearBase& layer)>;

// Swaps every dense linear (nn::Linear) whose name `include` selects and `exclude` does not for
// make(name, layer); layers already swapped are left alone. `what` names the caller in errors.
std::vector<std::string> swap_dense(torch::nn::Module& model, const char* what,
                                    const std::vector<std::string>& include,
                                    const std::vector<std::string>& exclude,
                                    const MakeLayer& make) {
  std::vector<std::string> swapped;
  std::set<std::string> in_slots;
  nn::for_each_linear(
      model, [&](nn::ModuleWithLinears& parent, const std::string& slot, const std::string& full,
                 const std::shared_ptr<nn::LinearBase>& layer) {
        in_slots.insert(full);
        if (!dynamic_cast<nn::Linear*>(layer.get())) return;  // already swapped or not dense
        if (!nn::selected(include, exclude, full)) return;
        parent.replace_linear(slot, make(full, *layer));
        swapped.push_back(full);
      });
  // A dense linear the rules select but that no slot holds cannot be swapped: say so.
  for (const auto& item : model.named_modules("", false)) {
    if (!std::dynamic_pointer_cast<nn::Linear>(item.value())) continue;
    const std::string& full = item.key();
    TORCH_CHECK(
        in_slots.count(full) || !nn::selected(include, exclude, full), what, ": linear '", full,
        "' matches the rules but its parent does not hold it in a ",
        "swappable slot (derive the parent from qat::nn::ModuleWithLinears and register it ",
        "with register_linear)");
  }
  TORCH_CHECK(!swapped.empty(), what, ": no linear layer matched include=", c10::Join(",", include),
              " exclude=", c10::Join(",", exclude));
  return swapped;
}

}  // namespace

nn::SlotVisitor nf4_swapper(const PrepareNf4Config& cfg, std::vector<std::string>* swapped) {
  cfg.layer.validate();
  return [cfg, swapped](nn::ModuleWithLinears& parent, const std::string& slot,
                        const std::string& full, const std::shared_ptr<nn::LinearBase>& layer) {
    if (!dynamic_cast<nn::Linear*>(layer.get()) || !nn::selected(cfg.include, cfg.exclude, full))
      return;
    parent.replace_linear(slot, nf4::NF4Linear::from_linear(*layer, cfg.layer));
    if (swapped) swapped->push_back(full);
  };
}

std::vector<std::string> prepare(torch::nn::Module& model, const PrepareConfig& cfg) {
  TORCH_CHECK(
      cfg.layer.weight || cfg.layer.activation || cfg.layer.sparsity.enabled,
      "prepare: the layer config quantizes nothing (no weight, no activation, no sparsity)");
  return swap_dense(
      model, "prepare", cfg.include, cfg.exclude,
      [&](const std::string& full, const nn::LinearBase& layer) {
        const nn::FakeQuantLinearConfig* use = &cfg.layer;
        const std::optional<nn::FakeQuantLinearConfig> chosen =
            cfg.choose ? cfg.choose(full, layer) : std::optional<nn::FakeQuantLinearConfig>();
        const std::vector<int64_t> shape{layer.out_features(), layer.in_features()};
        if (chosen) {
          use = &*chosen;
        } else if (cfg.layer.weight && !cfg.layer.weight->spec.groups_divide(shape)) {
          const scheme::QuantSpec& spec = cfg.layer.weight->spec;
          TORCH_CHECK(cfg.fallback, "prepare: linear '", full, "' (in_features ",
                      layer.in_features(), "): the block size ", spec.granularity.group_size,
                      " of ", spec.to_string(),
                      " does not divide the last dimension; set a fallback format for such layers ",
                      "(quant.fallback: llama.cpp falls back from Q4_K to gguf_q5_0, from Q5_K to "
                      "gguf_q5_1, from Q6_K to gguf_q8_0), ",
                      "choose a block size that divides it, or exclude the layer");
          use = &*cfg.fallback;
        }
        return std::make_shared<nn::FakeQuantLinear>(layer, *use);
      });
}

std::vector<std::string> prepare_nf4(torch::nn::Module& model, const PrepareNf4Config& cfg) {
  cfg.layer.validate();
  return swap_dense(model, "prepare_nf4", cfg.include, cfg.exclude,
                    [&](const std::string&, const nn::LinearBase& layer) {
                      return nf4::NF4Linear::from_linear(layer, cfg.layer);
                    });
}

std::vector<std::string> convert(torch::nn::Module& model) {
  std::vector<std::string> converted;
  nn::for_each_linear(
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
