// Quantize, dequantize and fake-quantize tensors (front-ends: validate, allocate, dispatch to the
// CPU reference in ops/cpu or the CUDA kernels in ops/cuda).
//
// A tensor's groups follow its QuantSpec: element i (row-major flat index) uses the parameters
// of group (i / inner) % count (see scheme::GroupLayout). Inputs may be float32, float16 or
// bfloat16; the math runs in float32 (ops/quant_math.h) and outputs take the input's dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include "qat/scheme/quant_spec.h"

namespace qat::ops {

using scheme::QuantSpec;

// Parameters of every group: scale and zero, float32, shaped spec.scale_shape(x.sizes()).
// zero is the integer zero point (uint), the block min (gguf_q4_1), or 0. For GGUF formats
// `scale` is ggml's fp32 d before it is rounded to fp16 (quantization uses the fp32 value,
// dequantization the fp16 one, exactly as ggml).
struct QParams {
  at::Tensor scale;
  at::Tensor zero;
};

// Per-group statistics [count, 4] float32: min, max, max|x|, and the element of largest |x|
// (first on ties, sign kept).
at::Tensor group_stats(const at::Tensor& x, const QuantSpec& spec);

// Min-max parameters (dynamic range setting), from group_stats.
QParams choose_qparams(const at::Tensor& x, const QuantSpec& spec);

// Parameters from a range per group (lo, hi: float32 with `count` elements), for range setting
// that clips (percentile, MSE search, moving-average observers). Not for GGUF formats, whose
// blocks always take their own range.
QParams qparams_from_range(const at::Tensor& lo, const at::Tensor& hi, const QuantSpec& spec,
                           at::IntArrayRef shape);

struct FakeQuantResult {
  at::Tensor y;     // dequantize(quantize(x)), x's dtype and shape
  at::Tensor mask;  // bool, true where x was inside the representable range; undefined unless asked
};

// y = dequantize(quantize(x, qp), qp), bit for bit. NaN inputs stay NaN.
FakeQuantResult fake_quantize(const at::Tensor& x, const QuantSpec& spec, const QParams& qp,
                              bool want_mask);

struct DynamicFakeQuantResult {
  at::Tensor y;
  at::Tensor mask;
  QParams qparams;
};
// choose_qparams + fake_quantize in one pass over each group (fused on CUDA). The one entry
// point that also takes the k-quants (gguf_q4_k, gguf_q6_k): their qparams stay undefined and the
// mask is all true. Every other function here refuses them (see ops/kquant.h).
DynamicFakeQuantResult fake_quantize_dynamic(const at::Tensor& x, const QuantSpec& spec,
                                             bool want_mask);

// Codes, one uint8 per element with x's shape: int formats keep two's complement bits, fp8 its
// byte, nf4/q4_* 0..15, q8_0 an int8's bits. x must be finite (checked).
at::Tensor quantize(const at::Tensor& x, const QuantSpec& spec, const QParams& qp);

// Values of codes as `dtype` (float32, float16 or bfloat16).
at::Tensor dequantize(const at::Tensor& codes, const QuantSpec& spec, const QParams& qp,
                      at::ScalarType dtype);

}  // namespace qat::ops
