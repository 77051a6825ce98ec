// What each linear of a model is, seen by the writers: a dense layer, a fake-quant layer (its
// spec, codes and qparams exactly as the forward uses them), an NF4 layer, and whether a LoRA
// adapter sits on top. One walk (nn::for_each_linear) classifies them all.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ops/quantize.h"
#include "qat/lora/lora.h"
#include "qat/models/llama.h"
#include "qat/nf4/nf4_linear.h"
#include "qat/nn/fake_quant_linear.h"

namespace qat::exporting {

struct LinearView {
  std::string name;  // HF module name: "model.layers.0.self_attn.q_proj", "lm_head"
  std::shared_ptr<nn::LinearBase> layer;  // as held in the slot
  std::shared_ptr<nn::LinearBase> base;   // the layer under a LoRA wrapper (== layer without one)
  const lora::LoraLinear* lora = nullptr;
  const nn::FakeQuantLinear* fake_quant = nullptr;  // set only while its weight quantizer is active
  const nf4::NF4Linear* nf4 = nullptr;

  // The weight the model computes with, float32 [out, in], LoRA folded in (PEFT's merge).
  at::Tensor merged_weight() const;
  // The base layer's weight without the adapter, float32.
  at::Tensor base_weight() const;
  at::Tensor bias() const { return base->bias(); }
  // "dense", "fake-quant int4/g32", "nf4", plus " + lora"
  std::string describe() const;
};

// The fake-quant weight as the forward sees it: the (masked) weight, the spec and the qparams
// the quantizer uses for it now, and the stored codes (ops::quantize). values() in float32 is the
// layer's effective_weight() bit for bit when the weight is float32 (ops/quant_math.h).
struct FakeQuantWeight {
  at::Tensor weight;  // the masked float weight the quantizer sees, [out, in]
  scheme::QuantSpec spec;
  ops::QParams qparams;  // undefined for the k-quants, which have none
  at::Tensor codes;      // uint8 [out, in]; k-quants: the ggml blocks [out, in/256 * block bytes]
  // The dequantized weight, float32 [out, in].
  at::Tensor values() const;
};
FakeQuantWeight fake_quant_weight(const nn::FakeQuantLinear& layer);

// Every linear held in a slot, in module order.
std::vector<LinearView> collect_linears(models::LlamaForCausalLM& model);

// The model's tensors that are not part of a linear (embeddings, norms), HF names, as stored.
std::map<std::string, at::Tensor> non_linear_tensors(const models::LlamaForCausalLM& model,
                                                     const std::vector<LinearView>& linears);

// max |a - b| and ||a - b||_F / ||a||_F (0 when a is all zero), in float64.
struct ErrorStats {
  double max_abs = 0, rel_fro = 0;
};
ErrorStats error_stats(const at::Tensor& reference, const at::Tensor& approx);

}  // namespace qat::exporting
