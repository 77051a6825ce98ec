// Fake-quant autograd functions: the forward is ops::fake_quantize (== dequantize(quantize(x))
// bit for bit), the backward is a straight-through estimator.
//
//   STE           dL/dx = dL/dy                        (rounding and clamping treated as identity)
//   clipped STE   dL/dx = dL/dy * [x inside the range]  (zero gradient where the clamp bites)
//   LSQ / LSQ+    learnable scale (and zero point), gradients below (Esser et al. 2020;
//                 Bhalgat et al. 2020)
#pragma once

#include <ATen/core/Tensor.h>

#include "ops/quantize.h"

namespace qat::fake_quant {

using ops::QParams;
using scheme::QuantSpec;

enum class GradMode { kSte, kClippedSte };

// Fake quant with given qparams (no gradient to them: they come from an observer or a calibration).
at::Tensor fake_quant(const at::Tensor& x, const QuantSpec& spec, const QParams& qp, GradMode mode);

// Fake quant with min-max qparams taken from x itself, per group, each call (weights: per step;
// activations: per token). The qparams carry no gradient. `qparams_out`, when given, receives them.
at::Tensor fake_quant_dynamic(const at::Tensor& x, const QuantSpec& spec, GradMode mode,
                              QParams* qparams_out = nullptr);

// LSQ (int, zero_point undefined) and LSQ+ (uint, learnable zero_point) fake quant.
//
// With v = x/s (as x * (1/s)), z = round(clamp(zero_point, qmin, qmax)) and
// c = round(v) + z, the forward is  y = (clamp(c, qmin, qmax) - z) * s  and the gradients are
//
//   dy/dx = 1                 if qmin <= c <= qmax, else 0
//   dy/ds = round(v) - v      if qmin <= c <= qmax
//         = qmin - z          if c < qmin
//         = qmax - z          if c > qmax
//   dy/dz = 0 inside, -s outside                              (STE through the rounding of z)
//
// and the scale and zero-point gradients are summed over each group and multiplied by
// grad_factor (the paper's g = 1/sqrt(N * qmax), N = elements per scale; lsq_grad_factor()).
// scale and zero_point are float32 with spec.scale_shape(x) elements; scale must be > 0.
at::Tensor fake_quant_lsq(const at::Tensor& x, const at::Tensor& scale,
                          const at::Tensor& zero_point, const QuantSpec& spec, double grad_factor);

// The paper's gradient scale for a tensor of this shape under this spec.
double lsq_grad_factor(const QuantSpec& spec, at::IntArrayRef shape);

}  // namespace qat::fake_quant
