// LoRA adapters (PEFT's formulation) over any linear base: dense, fake-quant (QAT + LoRA) or NF4
// (QLoRA).
//
//   y = base(x) + B(A(dropout(x))) * s,   s = alpha / r   (rsLoRA: alpha / sqrt(r))
//
// A (r, in) starts kaiming-uniform with a = sqrt(5) (bound 1/sqrt(in)), B (out, r) at zero, so a
// fresh adapter leaves the model unchanged. Only A and B train; apply_lora() freezes the rest.
// Module names follow PEFT ("...q_proj.base_layer", "...q_proj.lora_A.weight"), so adapter keys
// map to PEFT's by prefixing "base_model.model.".
#pragma once

#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

#include "qat/nn/linear.h"

namespace qat::lora {

struct LoraConfig {
  int64_t r = 8;
  double alpha = 16.0;
  double dropout = 0.0;
  bool use_rslora = false;
  // PEFT's target_modules: names or globs matched against the full module name or a dotted
  // suffix of it ("q_proj" picks every q_proj).
  std::vector<std::string> target_modules{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                          "gate_proj", "up_proj", "down_proj"};
  std::vector<std::string> exclude{"lm_head"};
  at::ScalarType adapter_dtype = at::kFloat;  // kFloat or kBFloat16

  double scaling() const;
  void validate() const;
};

class LoraLinear : public nn::LinearBase {
 public:
  LoraLinear(std::shared_ptr<nn::LinearBase> base, const LoraConfig& cfg);

  // The adapter runs in its own dtype; its output is cast to the base output's dtype.
  at::Tensor forward(const at::Tensor& x) override;
  // base.effective_weight() + s * B A in the base's dtype, without autograd.
  at::Tensor effective_weight() const override;
  // The same sum in float32 (or the base's dtype if wider): what merge_lora() folds in.
  at::Tensor merged_weight() const;
  at::Tensor bias() const override { return base_->bias(); }

  const std::shared_ptr<nn::LinearBase>& base() const { return base_; }
  const at::Tensor& lora_A() const { return a_; }  // (r, in)
  const at::Tensor& lora_B() const { return b_; }  // (out, r)
  double scaling() const { return scaling_; }

 private:
  at::Tensor merge_into(const at::Tensor& w) const;

  std::shared_ptr<nn::LinearBase> base_;
  at::Tensor a_, b_;
  double scaling_, dropout_;
};

// Wraps every matching linear held in a slot (nn::ModuleWithLinears) in a LoraLinear, freezes
// every other parameter of the model, and returns the wrapped names. Throws if nothing matched.
std::vector<std::string> apply_lora(torch::nn::Module& model, const LoraConfig& cfg);

// The adapters' parameters (what the optimizer trains), name -> tensor.
std::vector<std::pair<std::string, at::Tensor>> lora_parameters(const torch::nn::Module& model);

// Replaces every LoraLinear by a dense nn::Linear with weight dequant(base) + s * B A (in float32,
// or wider if the base is) and the base's bias. Returns the merged names. To deploy quantized,
// run prepare()/convert() on the merged model, or merge_lora_to_nf4().
std::vector<std::string> merge_lora(torch::nn::Module& model);

// What re-quantizing a merged weight W to W' costs: max |W - W'| and ||W - W'||_F / ||W||_F.
struct RequantError {
  std::string name;
  double max_abs = 0, rel_fro = 0;
};

// QLoRA deployment: merges every adapter as merge_lora() does, quantizes each merged weight back
// to NF4 (nf4::NF4Linear, with `blocksize`/double quant as given) and reports the error per layer.
std::vector<RequantError> merge_lora_to_nf4(torch::nn::Module& model, int64_t blocksize = 64,
                                            bool double_quant = true);

}  // namespace qat::lora
