// ggml's k-quants (Q4_K, Q6_K) on tensors. A tensor [..., K] with K a multiple of 256 is a run
// of 256-element super-blocks along its last dimension; its blocks are uint8
// [..., K/256 * block_bytes], exactly the bytes a GGUF tensor of that type holds row by row.
//
// Unlike the other formats there are no qparams to choose first: each super-block searches for
// its sub-block scales while it quantizes (ops/kquant_math.h), so these functions take the spec
// alone. fake_quantize_kquant(x) == dequantize_kquant(quantize_kquant(x)) bit for bit, and the
// blocks equal ggml's quantize_row_q4_K_ref / q6_K_ref (llama.cpp's llama-quantize without an
// importance matrix).
#pragma once

#include <ATen/core/Tensor.h>

#include "qat/scheme/quant_spec.h"

namespace qat::ops {

// x: float32/float16/bfloat16, finite (checked) -> uint8 blocks.
at::Tensor quantize_kquant(const at::Tensor& x, const scheme::QuantSpec& spec);

// blocks -> values [..., K] in `dtype` (float32, float16 or bfloat16).
at::Tensor dequantize_kquant(const at::Tensor& blocks, const scheme::QuantSpec& spec,
                             at::ScalarType dtype);

// dequantize(quantize(x)) without materialising the blocks, in x's dtype. A super-block holding
// NaN or Inf comes out all NaN.
at::Tensor fake_quantize_kquant(const at::Tensor& x, const scheme::QuantSpec& spec);

}  // namespace qat::ops
