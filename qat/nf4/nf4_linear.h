// NF4Linear: y = x W^T + b with W a frozen NF4Tensor (QLoRA's base layer without the adapter).
// forward dequantizes W into a transient buffer for at::linear; backward dequantizes it again
// for dX = dY W. Nothing dense outlives a call: autograd saves only the NF4 pieces. W gets no
// gradient; the optional dense bias is frozen as well (a buffer).
#pragma once

#include "qat/nf4/nf4_tensor.h"
#include "qat/nn/linear.h"

namespace qat::nf4 {

class NF4Linear : public qat::nn::LinearBase {
 public:
  // weight: NF4 [out, in]; bias: [out] or undefined.
  NF4Linear(NF4Tensor weight, at::Tensor bias);
  // Quantizes `source.effective_weight()` (its bias is copied, frozen).
  static std::shared_ptr<NF4Linear> from_linear(const qat::nn::LinearBase& source,
                                                const NF4Config& config = {});

  // x: [..., in] float32/float16/bfloat16; the weight is dequantized to x's dtype.
  at::Tensor forward(const at::Tensor& x) override;
  at::Tensor effective_weight() const override { return weight_.dequantize(); }
  at::Tensor bias() const override { return bias_; }

  const NF4Tensor& weight() const { return weight_; }
  // Bytes held by the layer: the NF4 weight's nbytes() + the bias.
  int64_t nbytes() const;

 private:
  NF4Tensor weight_;
  at::Tensor bias_;  // buffer, (out,) or undefined
};

}  // namespace qat::nf4
