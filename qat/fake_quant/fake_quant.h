// Fake-quant autograd functions: the forward is ops::fake_quantize (== dequantize(quantize(x))
// bit for bit), the backward is a straight-through estimator.
//
//   STE           dL/dx = dL/dy                        (rounding and clamping treated as identity)
//   clipped STE   dL/dx = dL/dy * [x inside the range]  (zero gradient where the clamp bites)
//   LSQ / LSQ+    learnable scale (and zero point), gradients below (Esser et al. 2020;
//                 Bhalgat et al. 2020)
//   learned ggml  learnable per-block d (and m) of ggml's block formats, stored as fp16 (below)
#pragma once

#include <ATen/core/Tensor.h>

#include "ops/kquant.h"
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

// Whether a format's block scales can be learned: ggml's 32-element block formats (Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1: fake_quant_gguf_learned) and its k-quants (Q4_K, Q5_K, Q6_K:
// fake_quant_kquant_learned).
bool learns_block_scales(scheme::Format f);

// What a GGUF file stores for learned block parameters: d (and m; undefined for the symmetric
// formats, which get zeros) each rounded to fp16, as float32. Quantization and dequantization
// both use these values, so the codes are the nearest ones on the grid the file holds.
QParams gguf_stored_qparams(const at::Tensor& d, const at::Tensor& m);

// Fake quant of ggml's block formats with learned parameters: d (every format) and m (Q4_1, Q5_1;
// undefined for the others) are float32 with spec.scale_shape(x) elements. The forward is
// ops::fake_quantize with gguf_stored_qparams(d, m), so the exported file (fp16 d and m, codes by
// ggml's rounding rule against them) reproduces it bit for bit. The gradients treat the fp16
// rounding of d and m and the rounding of each code as identity (LSQ's straight-through rules):
// with dh, mh the stored values, v = (x - mh) / dh and q the code as a signed level (Q4_0: code-8,
// Q5_0: code-16, Q8_0: the int8, Q4_1/Q5_1: the code), an element is inside when its rounding
// did not clamp, |v - q| <= 1/2, and
//
//   dy/dx = 1 inside, 0 outside
//   dy/dd = q - v inside, q outside                   (y = q dh + mh; a negative d works too)
//   dy/dm = 0 inside, 1 outside                       (Q4_1, Q5_1)
//
// summed over each block and multiplied by grad_factor (lsq_grad_factor()). A block whose d is 0
// stays all zeros (ggml's 1/d = 0) and gets no gradient for d.
at::Tensor fake_quant_gguf_learned(const at::Tensor& x, const at::Tensor& d, const at::Tensor& m,
                                   const QuantSpec& spec, double grad_factor);

// Learned k-quant scales (Q4_K, Q5_K, Q6_K) of a tensor [..., K], S = K/256 super-blocks of J
// sub-blocks (Q4_K, Q5_K: 8 of 32; Q6_K: 16 of 16), float32 parameters:
//   d, dmin    [..., S]    each super-block's d and dmin (dmin: Q4_K, Q5_K; undefined for Q6_K)
//   sub_scale  [..., S*J]  each sub-block's scale and min in the weight's units, as trained
//   sub_min    [..., S*J]  (sub_min: Q4_K, Q5_K; undefined for Q6_K)
struct KQuantLearned {
  at::Tensor d, dmin, sub_scale, sub_min;
};

// What the file stores for learned k-quant parameters: dh = fp16(d), dmh = fp16(dmin), and the
// sub-block codes sc = clamp(round(sub_scale / dh), 0, 63) (Q6_K: -128..127; 0 where dh = 0) and
// m = clamp(round(sub_min / dmh), 0, 63). ops::quantize_kquant_with(x, these) gives the blocks.
ops::KQuantParams kquant_stored_params(const KQuantLearned& p, const QuantSpec& spec);

// The learned k-quant's parameters that ggml's own search gives x (its blocks, read back; the
// sub-block values are dh * sc and dmh * m): where training starts.
KQuantLearned kquant_learned_init(const at::Tensor& x, const QuantSpec& spec);

// Fake quant with learned k-quant scales. The forward quantizes each element as ggml does against
// the stored parameters, dj = dh * sc and mj = dmh * m: L = clamp(round((x + mj) / dj), 0, nmax)
// (Q6_K: clamp(round(x / dj), -32, 31); L = 0 where dj = 0) and y = dj * L - mj, each operation
// rounded to float32 as ggml's dequantization does: dequantize_kquant of the blocks
// quantize_kquant_with(x, kquant_stored_params(p)) writes, bit for bit.
//
// Gradients: LSQ's straight-through rules at both levels. An element is inside when its rounding
// did not clamp (|v - L| <= 1/2 with v = (x + mj) / dj, and dj != 0); a sub-block's code is inside
// likewise (|u - sc| <= 1/2 with u = sub_scale / dh). With G_dj and G_mj the output gradient summed
// over a sub-block's elements times
//   dy/dx = 1 inside, 0 outside;  dy/ddj = L - v inside, L outside;  dy/dmj = 0 inside, -1 outside,
// the parameters get
//   sub_scale: G_dj [sc inside]                   d:    sum over sub-blocks of G_dj (sc - u
//   [inside]) sub_min:   G_mj [m inside]                    dmin: sum over sub-blocks of G_mj (m -
//   u_m [inside])
// times grad factors: sub-block parameters 1/sqrt(sub-block size * nmax), super-block ones that
// over sqrt(J * 63) (Q6_K: J * 127).
at::Tensor fake_quant_kquant_learned(const at::Tensor& x, const KQuantLearned& p,
                                     const QuantSpec& spec);

}  // namespace qat::fake_quant
