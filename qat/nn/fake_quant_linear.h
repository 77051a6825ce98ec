// FakeQuantLinear: a linear layer trained against its deployed numerics. The weight (optionally
// 2:4-sparsified) and the input activations each pass a FakeQuantizer; either can be off.
#pragma once

#include <functional>
#include <optional>

#include "qat/fake_quant/fake_quantizer.h"
#include "qat/nn/linear.h"
#include "qat/nn/sparsity.h"

namespace qat::nn {

struct FakeQuantLinearConfig {
  std::optional<fake_quant::FakeQuantizerConfig> weight;      // nullopt: weights stay dense
  std::optional<fake_quant::FakeQuantizerConfig> activation;  // nullopt: inputs stay dense
  SparsityConfig sparsity;
};

class FakeQuantLinear : public LinearBase {
 public:
  // Wraps the weight and bias of `source` (the same tensors: an optimizer built later sees them).
  FakeQuantLinear(const LinearBase& source, FakeQuantLinearConfig cfg);

  at::Tensor forward(const at::Tensor& x) override;
  // The weight the forward multiplies by now (fake-quantized, masked), without autograd.
  at::Tensor effective_weight() const override;
  at::Tensor bias() const override { return bias_; }

  const at::Tensor& weight() const { return weight_; }
  const at::Tensor& sparsity_mask() const { return mask_; }  // undefined when sparsity is off
  // See FakeQuantizerImpl::set_step: the trainer sets it to the optimizer step.
  void set_step(int64_t step) { step_.fill_(step); }
  fake_quant::FakeQuantizer weight_quantizer() const { return weight_fq_; }
  fake_quant::FakeQuantizer activation_quantizer() const { return act_fq_; }
  const FakeQuantLinearConfig& config() const { return cfg_; }

  // Enable or disable both quantizers (e.g. to evaluate the float model).
  void set_fake_quant_enabled(bool on);

  // Calls `hook` with each input the forward multiplies (after the input fake quant): how GPTQ
  // collects a layer's Hessian (qat/transforms/gptq.h). An empty function removes it.
  void set_input_hook(std::function<void(const at::Tensor&)> hook) {
    input_hook_ = std::move(hook);
  }

 private:
  at::Tensor masked_weight() const;

  FakeQuantLinearConfig cfg_;
  at::Tensor weight_, bias_;
  at::Tensor mask_;  // buffer (bool), 2:4 sparsity
  at::Tensor step_;  // buffer: training forwards (drives mask recomputation)
  fake_quant::FakeQuantizer weight_fq_{nullptr}, act_fq_{nullptr};
  std::function<void(const at::Tensor&)> input_hook_;
};

}  // namespace qat::nn
