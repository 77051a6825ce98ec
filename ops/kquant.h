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

// ---- given parameters (learned k-quant scales, qat/fake_quant/fake_quant.h) ----------------

// A k-quant tensor's parameters as its blocks store them, float32 holding exact values: per
// super-block d (fp16 values; Q6_K's is signed) and dmin (Q4_K, Q5_K; undefined for Q6_K), shaped
// [..., K/256]; per sub-block the scale codes (Q4_K, Q5_K: 0..63 for eight sub-blocks of 32;
// Q6_K: -128..127 for sixteen of 16) and min codes (Q4_K, Q5_K: 0..63; undefined for Q6_K),
// shaped [..., K/256 * sub-blocks].
struct KQuantParams {
  at::Tensor d, dmin, scales, mins;
};

// Sub-blocks per super-block: 8 (Q4_K, Q5_K) or 16 (Q6_K).
int kquant_sub_blocks(scheme::Format f);

// The parameters blocks hold (for example the ones quantize_kquant's search chose).
KQuantParams kquant_params(const at::Tensor& blocks, const scheme::QuantSpec& spec);

// Blocks that hold `p`, each element of x coded as ggml codes it against the scales it stored
// (a sub-block of scale 0 gets code 0). dequantize_kquant of them is the learned fake quant's
// forward. Runs on the CPU (x and p may live anywhere; the blocks come back on x's device).
at::Tensor quantize_kquant_with(const at::Tensor& x, const KQuantParams& p,
                                const scheme::QuantSpec& spec);

}  // namespace qat::ops
