// Fake quantization of single values with fixed per-group parameters, on the host: the arithmetic
// of ops::fake_quantize one element at a time, for algorithms that round values in an order that
// depends on earlier results (GPTQ, qat/transforms/gptq.h). Equal to fake_quantize bit for bit
// (tests/ops/test_quantize.cpp).
#pragma once

#include <vector>

#include "ops/quant_math.h"
#include "ops/quantize.h"

namespace qat::ops {

class ElementFakeQuant {
 public:
  // qp: one scale (and zero) per group in any shape, as choose_qparams gives them (any device;
  // copied). `dtype`: the tensor type the values come from and the results go to (float32,
  // float16 or bfloat16). Not for the k-quants (no per-group parameters).
  ElementFakeQuant(const QuantSpec& spec, const QParams& qp, at::ScalarType dtype);
  // k-quants against stored parameters: one group per sub-block, with its scale dj = d * sc and
  // min dm = dmin * m as the blocks store them (float32, one per sub-block; sub_min undefined for
  // Q6_K). The value of x is what dequantizing its code gives (ops/kquant_math.h), so a weight
  // rounded this way is what ops::quantize_kquant_with stores for it.
  static ElementFakeQuant kquant(scheme::Format f, const at::Tensor& sub_scale,
                                 const at::Tensor& sub_min, at::ScalarType dtype);

  int64_t groups() const { return static_cast<int64_t>(params_.size()); }
  // What fake_quantize outputs for the value x (a value of dtype) in group g.
  float operator()(float x, int64_t g) const {
    return fake_quant_(x, params_[static_cast<size_t>(g)]);
  }
  // x rounded to dtype (to nearest even), as a tensor of dtype stores it.
  float to_dtype(float x) const { return to_dtype_(x); }

 private:
  ElementFakeQuant() = default;
  std::vector<math::GroupQParams> params_;
  float (*fake_quant_)(float, const math::GroupQParams&) = nullptr;
  float (*to_dtype_)(float) = nullptr;
};

}  // namespace qat::ops
