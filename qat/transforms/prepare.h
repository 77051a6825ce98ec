// prepare(): swap dense linear layers for FakeQuantLinear by name rules.
// prepare_nf4(): swap dense linear layers for frozen NF4 weights (NF4Linear) by name rules.
// convert(): swap every FakeQuantLinear for a QuantizedLinear holding packed codes.
//
// The rules are include/exclude lists of globs matched against full module names
// (nn::name_matches, qat/nn/module_walk.h: "q_proj" picks every q_proj, as PEFT's
// target_modules do).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qat/nf4/nf4_tensor.h"
#include "qat/nn/fake_quant_linear.h"
#include "qat/nn/module_walk.h"

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

// Returns the names of the swapped layers, in order. Throws if a matching linear is not held in
// a swappable slot (see nn::ModuleWithLinears) or if nothing matched.
std::vector<std::string> prepare(torch::nn::Module& model, const PrepareConfig& cfg);

// QLoRA's base layers: each dense linear the rules select becomes an nf4::NF4Linear holding its
// weight in bitsandbytes' NF4 format (block size and double quant from `layer`), frozen; LoRA
// adapters go on top afterwards (lora::apply_lora).
struct PrepareNf4Config {
  std::vector<std::string> include{"*"};
  std::vector<std::string> exclude{"lm_head", "*embed*"};
  nf4::NF4Config layer;
};

// As prepare(): the names of the swapped layers, in order; throws on a matching linear outside a
// swappable slot or if nothing matched.
std::vector<std::string> prepare_nf4(torch::nn::Module& model, const PrepareNf4Config& cfg);
// prepare_nf4's swap of one layer, for a streamed load (models::load_model with a visitor): each
// dense linear the rules select becomes NF4 as soon as it is read, and its name is appended to
// `swapped` when given (it must outlive the load). The result equals load-then-prepare_nf4 bit
// for bit.
nn::SlotVisitor nf4_swapper(const PrepareNf4Config& cfg, std::vector<std::string>* swapped);

// Returns the names of the converted layers.
std::vector<std::string> convert(torch::nn::Module& model);

}  // namespace qat::transforms
