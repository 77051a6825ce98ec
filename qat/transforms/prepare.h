// prepare(): swap dense linear layers for FakeQuantLinear by name rules.
// convert(): swap every FakeQuantLinear for a QuantizedLinear holding packed codes.
//
// Names are full module paths ("model.layers.0.self_attn.q_proj"). A rule is a glob (fnmatch
// syntax); it matches a name if it matches the whole name or a dotted suffix of it, so "q_proj"
// and "*.q_proj" both pick every q_proj, as PEFT's target_modules do.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qat/nn/fake_quant_linear.h"

namespace qat::transforms {

struct PrepareConfig {
  std::vector<std::string> include{"*"};
  // Embeddings and the output head stay dense by default: they are the most sensitive to
  // quantization and llama.cpp keeps them at higher precision too.
  std::vector<std::string> exclude{"lm_head", "*embed*"};
  nn::FakeQuantLinearConfig layer;
  // For layers whose weight `layer`'s weight format cannot split into its blocks (k-quants need
  // in_features % 256 == 0; SmolLM2-135M's 576 does not): llama.cpp quantizes such tensors with
  // a fallback type too (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). Unset: such a layer is an error
  // that names it.
  std::optional<nn::FakeQuantLinearConfig> fallback;
  // When set, picks the config of each layer the rules select, by its name (e.g. from a llama.cpp
  // mixture, qat/io/llama_mix.h); nullopt: `layer` (or `fallback`) as above.
  std::function<std::optional<nn::FakeQuantLinearConfig>(const std::string& name,
                                                         const nn::LinearBase& layer)>
      choose;
};

bool name_matches(const std::string& pattern, const std::string& name);
// True when `name` matches one of the patterns.
bool any_match(const std::vector<std::string>& patterns, const std::string& name);

// Calls fn(parent, slot, full_name, layer) for every linear a model holds in a swappable slot
// (nn::ModuleWithLinears), parents in module order. fn may replace the layer in its slot.
using SlotVisitor =
    std::function<void(nn::ModuleWithLinears& parent, const std::string& slot,
                       const std::string& full_name, const std::shared_ptr<nn::LinearBase>& layer)>;
void for_each_linear(torch::nn::Module& model, const SlotVisitor& fn);

// Returns the names of the swapped layers, in order. Throws if a matching linear is not held in
// a swappable slot (see nn::ModuleWithLinears) or if nothing matched.
std::vector<std::string> prepare(torch::nn::Module& model, const PrepareConfig& cfg);

// Returns the names of the converted layers.
std::vector<std::string> convert(torch::nn::Module& model);

}  // namespace qat::transforms
