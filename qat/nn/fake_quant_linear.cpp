#include "qat/nn/fake_quant_linear.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "ops/kquant.h"
#include "qat/fake_quant/recompute.h"

namespace qat::nn {

FakeQuantLinear::FakeQuantLinear(const LinearBase& source, FakeQuantLinearConfig cfg)
    : LinearBase(source.in_features(), source.out_features()), cfg_(std::move(cfg)) {
  const auto* dense = dynamic_cast<const Linear*>(&source);
  TORCH_CHECK(dense, "FakeQuantLinear wraps a dense qat::nn::Linear");
  weight_ = register_parameter("weight", dense->weight());
  if (dense->bias().defined()) bias_ = register_parameter("bias", dense->bias());
  step_ = register_buffer("step", torch::zeros({}, torch::kLong));
  if (cfg_.sparsity.enabled) {
    TORCH_CHECK(cfg_.sparsity.recompute_every >= 0, "sparsity.recompute_every must be >= 0, got ",
                cfg_.sparsity.recompute_every);
    mask_ = register_buffer("sparsity_mask", mask_2_4(weight_));
  }
  if (cfg_.weight) {
    torch::NoGradGuard no_grad;
    weight_fq_ = register_module("weight_fake_quant",
                                 fake_quant::FakeQuantizer(*cfg_.weight, masked_weight()));
  }
  if (cfg_.activation) {
    act_fq_ = register_module("activation_fake_quant", fake_quant::FakeQuantizer(*cfg_.activation));
  }
}

at::Tensor FakeQuantLinear::masked_weight() const {
  return mask_.defined() ? weight_ * mask_ : weight_;
}

at::Tensor FakeQuantLinear::forward(const at::Tensor& x) {
  if (is_training() &&
      !fake_quant::recomputing()) {  // a checkpoint recomputation reuses this step's mask
    const int64_t step = step_.item<int64_t>();
    const int64_t every = cfg_.sparsity.recompute_every;
    if (mask_.defined() && every > 0 && step > 0 && step % every == 0)
      mask_.copy_(mask_2_4(weight_));
    step_.add_(1);
  }
  const at::Tensor xq = act_fq_ ? act_fq_->forward(x) : x;
  if (input_hook_) input_hook_(xq);
  const at::Tensor w = masked_weight();
  const at::Tensor wq = weight_fq_ ? weight_fq_->forward(w) : w;
  return at::linear(xq, wq, bias_);
}

at::Tensor FakeQuantLinear::effective_weight() const {
  torch::NoGradGuard no_grad;
  const at::Tensor w = masked_weight();
  if (!weight_fq_ || !weight_fq_->active()) return w;
  const scheme::QuantSpec& spec = weight_fq_->config().spec;
  if (scheme::is_kquant(spec.format)) {  // no qparams: the blocks themselves
    if (weight_fq_->config().scale_mode != fake_quant::ScaleMode::kLearnable)
      return ops::fake_quantize_kquant(w, spec);
    return ops::dequantize_kquant(weight_fq_->kquant_blocks(w), spec, w.scalar_type());
  }
  return ops::fake_quantize(w, spec, weight_fq_->qparams_for(w), false).y;
}

void FakeQuantLinear::set_fake_quant_enabled(bool on) {
  if (weight_fq_) weight_fq_->set_enabled(on);
  if (act_fq_) act_fq_->set_enabled(on);
}

}  // namespace qat::nn
