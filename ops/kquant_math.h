// ggml's k-quant super-blocks Q4_K, Q5_K and Q6_K, one 256-element block at a time, shared by the
// CPU reference (ops/cpu/kquant_cpu.cpp) and the CUDA kernels (ops/cuda/kquant_cuda.cu).
//
// Written from the algorithm of ggml-quants.c (quantize_row_q4_K_ref and q5_K_ref with
// make_qkx2_quants, quantize_row_q6_K_ref with make_qx_quants, dequantize_row_q4_K/q5_K/q6_K,
// get_scale_min_k4) and the
// block layouts of ggml-common.h. The quantizers search for each sub-block's scale (and min)
// with a weighted least-squares fit, so the result depends on every float operation: each one
// here is rounded on its own, in the order ggml writes it (ggml-base is built without -march, so
// x86-64 ggml has no FMA to contract into either). That makes the bytes equal llama.cpp's own
// `llama-quantize` output (tests/ops/test_kquants.cpp checks against libggml-base), and
// fake_quant == dequantize(quantize) bit for bit.
//
// The block structs are qat/scheme/blocks.h's; the code reads and writes them as bytes at their
// fields' offsets (the k* constants below):
// Q4_K (144 bytes): f16 d, f16 dmin, u8 scales[12] (8 six-bit scales + 8 six-bit mins),
//   u8 qs[128]; 8 sub-blocks of 32, y = (d * sc) * q - (dmin * m), q in 0..15.
// Q5_K (176 bytes): Q4_K's d, dmin and scales, then u8 qh[32] (the fifth bits), u8 qs[128];
//   the same sub-blocks and formula with q in 0..31.
// Q6_K (210 bytes): u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), i8 scales[16], f16 d;
//   16 sub-blocks of 16, y = (d * sc) * q, q in -32..31.
//
// A super-block holding NaN or +-inf has no meaningful scales: fake quant returns NaN for all of
// it (the trainer stops on a NaN loss), and the tensor front-ends refuse to quantize it.
#pragma once

#include "ops/quant_math.h"
#include "qat/scheme/blocks.h"

namespace qat::ops::kquant {

namespace m = qat::ops::math;

using scheme::BlockQ4_K;
using scheme::BlockQ5_K;
using scheme::BlockQ6_K;

inline constexpr int kSuperBlock = 256;
static_assert(kSuperBlock == scheme::traits(scheme::Format::kQ4_K).fixed_block &&
                  kSuperBlock == scheme::traits(scheme::Format::kQ5_K).fixed_block &&
                  kSuperBlock == scheme::traits(scheme::Format::kQ6_K).fixed_block,
              "k-quant super-blocks are 256 elements");
// Field offsets. Q4_K and Q5_K share d, dmin and scales; their codes start at different offsets.
inline constexpr int kDminOffset = offsetof(BlockQ4_K, dmin);
inline constexpr int kScalesOffset = offsetof(BlockQ4_K, scales);
static_assert(offsetof(BlockQ4_K, d) == 0 && offsetof(BlockQ5_K, d) == 0 &&
                  offsetof(BlockQ5_K, dmin) == kDminOffset &&
                  offsetof(BlockQ5_K, scales) == kScalesOffset,
              "Q4_K and Q5_K share their header");
inline constexpr int kQ5KQhOffset = offsetof(BlockQ5_K, qh);
template <int kNmax>
inline constexpr int kAffineQsOffset = kNmax == 15 ? offsetof(BlockQ4_K, qs)
                                                   : offsetof(BlockQ5_K, qs);
inline constexpr int kQ6KQhOffset = offsetof(BlockQ6_K, qh);
inline constexpr int kQ6KScalesOffset = offsetof(BlockQ6_K, scales);
inline constexpr int kQ6KDOffset = offsetof(BlockQ6_K, d);
static_assert(offsetof(BlockQ6_K, ql) == 0, "Q6_K starts with ql");
// The largest block, for a buffer that holds any of them.
inline constexpr int kMaxBlockBytes = sizeof(BlockQ6_K);
static_assert(sizeof(BlockQ4_K) <= kMaxBlockBytes && sizeof(BlockQ5_K) <= kMaxBlockBytes,
              "kMaxBlockBytes holds every k-quant block");

// ggml's nearest_int: adding 1.5 * 2^23 rounds to an integer (nearest, ties to even) and leaves
// it in the low mantissa bits. Equal to rint() for |v| < 2^22; larger values wrap as ggml's do.
QAT_HD int nearest_int(float v) {
  const float t = m::add_rn(v, 12582912.0f);
  return static_cast<int>(m::float_bits(t) & 0x007fffffu) - 0x00400000;
}

QAT_HD float sqrt_rn(float v) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(v);
#else
  return std::sqrt(v);
#endif
}

QAT_HD bool all_finite(const float* x, int n) {
  for (int i = 0; i < n; ++i) {
    if (!(fabsf(x[i]) < INFINITY)) return false;
  }
  return true;
}

QAT_HD float half_at(const uint8_t* p) {
  return m::half_bits_to_float(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}
QAT_HD void store_half(uint8_t* p, float v) {
  const uint16_t h = m::float_to_half_bits(v);
  p[0] = static_cast<uint8_t>(h & 0xff);
  p[1] = static_cast<uint8_t>(h >> 8);
}

// ---- Q4_K and Q5_K --------------------------------------------------------------------------

// Scale and min of sub-block j from the 12 packed bytes: entries 0..3 sit in the low 6 bits of
// bytes 0..3 (scales) and 4..7 (mins); entries 4..7 take their low 4 bits from bytes 8..11
// (scale: low nibble, min: high nibble) and their top 2 bits from the spare top bits of bytes
// 0..3 (scales) and 4..7 (mins).
QAT_HD void q4k_scale_min(int j, const uint8_t* q, int* sc, int* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// One sub-block of 32: the (scale, -min) pair minimising sum w * (scale*L + min - x)^2 over
// nstep + 1 candidate grids (ggml's make_qkx2_quants with rdelta 0.1: Q4_K takes nmax 15, rmin -1,
// nstep 20; Q5_K nmax 31, rmin -0.5, nstep 15). L gets the codes of the best grid; returns the
// scale, *neg_min the min negated (>= 0).
template <int kNmax>
QAT_HD float affine_fit_subblock(const float* x, const float* w, float rmin, int nstep, uint8_t* L,
                                 float* neg_min) {
  constexpr int n = 32;
  constexpr float nmax = static_cast<float>(kNmax);
  float lo = x[0], hi = x[0];
  float sum_w = w[0];
  float sum_x = m::mul_rn(sum_w, x[0]);
  for (int i = 1; i < n; ++i) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
    sum_w = m::add_rn(sum_w, w[i]);
    sum_x = m::add_rn(sum_x, m::mul_rn(w[i], x[i]));
  }
  if (lo > 0.0f) lo = 0.0f;
  if (hi == lo) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *neg_min = -lo;
    return 0.0f;
  }
  float iscale = m::div_rn(nmax, m::add_rn(hi, -lo));
  float scale = m::div_rn(1.0f, iscale);
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(m::mul_rn(iscale, m::add_rn(x[i], -lo)));
    l = l < 0 ? 0 : (l > kNmax ? kNmax : l);
    L[i] = static_cast<uint8_t>(l);
    const float diff = m::add_rn(m::add_rn(m::mul_rn(scale, static_cast<float>(l)), lo), -x[i]);
    best_error = m::add_rn(best_error, m::mul_rn(w[i], m::mul_rn(diff, diff)));
  }
  // As in ggml, once a candidate wins, `lo` is its (fitted) min, and later candidates' grids
  // span [lo, hi] from there.
  uint8_t aux[n];
  for (int is = 0; is <= nstep; ++is) {
    iscale = m::div_rn(m::add_rn(m::add_rn(rmin, m::mul_rn(0.1f, static_cast<float>(is))), nmax),
                       m::add_rn(hi, -lo));
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(m::mul_rn(iscale, m::add_rn(x[i], -lo)));
      l = l < 0 ? 0 : (l > kNmax ? kNmax : l);
      aux[i] = static_cast<uint8_t>(l);
      const float wl = m::mul_rn(w[i], static_cast<float>(l));
      sum_l = m::add_rn(sum_l, wl);
      sum_l2 = m::add_rn(sum_l2, m::mul_rn(wl, static_cast<float>(l)));
      sum_xl = m::add_rn(sum_xl, m::mul_rn(wl, x[i]));
    }
    const float det = m::add_rn(m::mul_rn(sum_w, sum_l2), -m::mul_rn(sum_l, sum_l));
    if (det > 0.0f) {
      float this_scale =
          m::div_rn(m::add_rn(m::mul_rn(sum_w, sum_xl), -m::mul_rn(sum_x, sum_l)), det);
      float this_min =
          m::div_rn(m::add_rn(m::mul_rn(sum_l2, sum_x), -m::mul_rn(sum_l, sum_xl)), det);
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = m::div_rn(sum_xl, sum_l2);
      }
      float cur_error = 0.0f;
      for (int i = 0; i < n; ++i) {
        const float diff = m::add_rn(
            m::add_rn(m::mul_rn(this_scale, static_cast<float>(aux[i])), this_min), -x[i]);
        cur_error = m::add_rn(cur_error, m::mul_rn(w[i], m::mul_rn(diff, diff)));
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = aux[i];
        best_error = cur_error;
        scale = this_scale;
        lo = this_min;
      }
    }
  }
  *neg_min = -lo;
  return scale;
}

#if !defined(__CUDA_ARCH__)
// Eight float / int32 lanes, one per sub-block (GCC/Clang vector extensions: on the x86-64
// baseline each is a pair of SSE registers). Lane arithmetic is IEEE per lane, as the scalar code.
typedef float Lanes __attribute__((vector_size(32)));
typedef int32_t LaneInts __attribute__((vector_size(32)));

// codes = clamp(nearest_int(v), kLo, kHi) in every lane. (Lanes go by reference: passing 32-byte
// vectors by value without AVX changes the calling convention, and GCC warns.)
template <int kLo, int kHi>
inline void lanes_codes(const Lanes& v, LaneInts& codes) {
  const Lanes t = v + 12582912.0f;  // nearest_int's rounding
  LaneInts bits;
  memcpy(&bits, &t, sizeof(bits));
  const LaneInts zero = {}, lo = zero + kLo, hi = zero + kHi;
  codes = (bits & 0x007fffff) - 0x00400000;
  codes = codes < lo ? lo : codes;
  codes = codes > hi ? hi : codes;
}
inline void lanes_abs(const Lanes& v, Lanes& a) {
  LaneInts bits;
  memcpy(&bits, &v, sizeof(bits));
  bits &= 0x7fffffff;
  memcpy(&a, &bits, sizeof(a));
}

// The eight sub-blocks of a super-block fitted in lockstep, for the host. Lane j runs exactly
// affine_fit_subblock's operations on sub-block j, in the same order (a - b is a + (-b) in IEEE
// arithmetic), so the results are the same bits; but the eight chains of dependent float
// additions run side by side instead of one after another (the fit is latency-bound: 21 grids x
// 32 sequential sums per sub-block). Branches become per-lane selects; a flat sub-block (hi == lo)
// takes no grid and ends as the scalar version's early return.
template <int kNmax>
inline void affine_fit_8_subblocks(const float* x, const float* w, float rmin, int nstep,
                                   uint8_t* L, float* scale_out, float* neg_min_out) {
  constexpr int n = 32;
  constexpr float nmax = static_cast<float>(kNmax);
  const Lanes zero = {};
  Lanes xt[n], wt[n];  // element i of sub-block j in lane j of xt[i]
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < 8; ++j) {
      xt[i][j] = x[n * j + i];
      wt[i][j] = w[n * j + i];
    }
  }
  Lanes lo = xt[0], hi = xt[0], sum_w = wt[0], sum_x = wt[0] * xt[0];
  for (int i = 1; i < n; ++i) {
    lo = xt[i] < lo ? xt[i] : lo;
    hi = xt[i] > hi ? xt[i] : hi;
    sum_w = sum_w + wt[i];
    sum_x = sum_x + wt[i] * xt[i];
  }
  lo = lo > zero ? zero : lo;
  const LaneInts flat = hi == lo;
  Lanes iscale = nmax / (hi - lo);  // inf in a flat lane, whose grids never count
  Lanes scale = 1.0f / iscale;
  Lanes best_error = zero;
  for (int i = 0; i < n; ++i) {
    LaneInts l;
    lanes_codes<0, kNmax>(iscale * (xt[i] - lo), l);
    const Lanes diff = (scale * __builtin_convertvector(l, Lanes) + lo) - xt[i];
    best_error = best_error + wt[i] * (diff * diff);
  }
  Lanes code_iscale = iscale, code_lo = lo;  // the grid the codes come from, per lane
  for (int is = 0; is <= nstep; ++is) {
    iscale = ((rmin + 0.1f * static_cast<float>(is)) + nmax) / (hi - lo);
    Lanes sum_l = zero, sum_l2 = zero, sum_xl = zero;
    LaneInts aux[n];
    for (int i = 0; i < n; ++i) {
      lanes_codes<0, kNmax>(iscale * (xt[i] - lo), aux[i]);
      const Lanes l = __builtin_convertvector(aux[i], Lanes);
      const Lanes wl = wt[i] * l;
      sum_l = sum_l + wl;
      sum_l2 = sum_l2 + wl * l;
      sum_xl = sum_xl + wl * xt[i];
    }
    const Lanes det = sum_w * sum_l2 - sum_l * sum_l;
    const Lanes fit_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    const Lanes fit_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    const LaneInts min_positive = fit_min > zero;
    const Lanes this_scale = min_positive ? sum_xl / sum_l2 : fit_scale;
    const Lanes this_min = min_positive ? zero : fit_min;
    Lanes cur_error = zero;
    for (int i = 0; i < n; ++i) {
      const Lanes diff = (this_scale * __builtin_convertvector(aux[i], Lanes) + this_min) - xt[i];
      cur_error = cur_error + wt[i] * (diff * diff);
    }
    const LaneInts win = (det > zero) & ~flat & (cur_error < best_error);
    best_error = win ? cur_error : best_error;
    scale = win ? this_scale : scale;
    code_iscale = win ? iscale : code_iscale;
    code_lo = win ? lo : code_lo;
    lo = win ? this_min : lo;
  }
  // The codes of each lane's winning grid, computed again from the same inputs: same bits, and
  // cheaper than copying 32 code vectors under a mask at every win.
  LaneInts codes[n];
  for (int i = 0; i < n; ++i) lanes_codes<0, kNmax>(code_iscale * (xt[i] - code_lo), codes[i]);
  for (int j = 0; j < 8; ++j) {
    scale_out[j] = flat[j] ? 0.0f : scale[j];
    neg_min_out[j] = -lo[j];
    for (int i = 0; i < n; ++i)
      L[n * j + i] = flat[j] ? uint8_t{0} : static_cast<uint8_t>(codes[i][j]);
  }
}
#endif

// The 12 packed bytes of eight 6-bit scales and mins (the inverse of q4k_scale_min).
QAT_HD void pack_scale_min_k(const uint8_t* ls, const uint8_t* lm, uint8_t* packed) {
  for (int j = 0; j < 12; ++j) packed[j] = 0;
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      packed[j] = ls[j];
      packed[j + 4] = lm[j];
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// ggml's code of x in a Q4_K/Q5_K sub-block of scale dj (!= 0) and min dm:
// clamp(nearest((x + dm) / dj), 0, kNmax).
// (The quotient is clamped to [-1, kNmax + 1] first, which changes no code, so that a tiny
// learned dj cannot take nearest_int past 2^22, where it wraps.)
template <int kNmax>
QAT_HD uint8_t affine_k_code(float x, float dj, float dm) {
  const float v = m::div_rn(m::add_rn(x, dm), dj);
  const int l = nearest_int(m::fmin_f(m::fmax_f(v, -1.0f), static_cast<float>(kNmax + 1)));
  return static_cast<uint8_t>(l < 0 ? 0 : (l > kNmax ? kNmax : l));
}

// The 256 codes of a Q4_K/Q5_K block into its qs (and Q5_K's qh) bytes. Sub-blocks 2c and 2c+1
// share bytes qs[32c .. 32c+32): low nibbles, then high nibbles. Q5_K keeps the fifth bit of
// element 32j + l at bit j of qh[l].
template <int kNmax>
QAT_HD void pack_codes_affine_k(const uint8_t* L, uint8_t* out) {
  uint8_t* qh = out + kQ5KQhOffset;
  uint8_t* qs = out + kAffineQsOffset<kNmax>;
  if (kNmax == 31) {
    for (int l = 0; l < 32; ++l) qh[l] = 0;
    for (int j = 0; j < 8; ++j) {
      for (int l = 0; l < 32; ++l) qh[l] |= static_cast<uint8_t>((L[32 * j + l] >> 4) << j);
    }
  }
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      qs[32 * c + l] =
          static_cast<uint8_t>((L[64 * c + l] & 0x0f) | ((L[64 * c + 32 + l] & 0x0f) << 4));
    }
  }
}

// x: 256 finite floats -> one Q4_K (kNmax 15, 144 bytes) or Q5_K (kNmax 31, 176 bytes) block
// (ggml's quantize_row_q4_K_ref / q5_K_ref).
template <int kNmax>
QAT_HD void quantize_block_affine_k(const float* x, uint8_t* out) {
  constexpr float kRmin = kNmax == 15 ? -1.0f : -0.5f;
  constexpr int kNstep = kNmax == 15 ? 20 : 15;
  uint8_t L[kSuperBlock];
  float scales[8], mins[8], w[kSuperBlock];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    // Weights favour large elements: w = rms(sub-block) + |x|.
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 = m::add_rn(sum_x2, m::mul_rn(xs[l], xs[l]));
    const float av_x = sqrt_rn(m::div_rn(sum_x2, 32.0f));
    for (int l = 0; l < 32; ++l) w[32 * j + l] = m::add_rn(av_x, fabsf(xs[l]));
#if defined(__CUDA_ARCH__)  // a GPU thread fits one sub-block after another; the host all 8 at once
    scales[j] = affine_fit_subblock<kNmax>(xs, w + 32 * j, kRmin, kNstep, L + 32 * j, &mins[j]);
#endif
  }
#if !defined(__CUDA_ARCH__)
  affine_fit_8_subblocks<kNmax>(x, w, kRmin, kNstep, L, scales, mins);
#endif
  for (int j = 0; j < 8; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  // Scales and mins become 6-bit multiples of the fp16 super-block d and dmin.
  const float inv_scale = max_scale > 0.0f ? m::div_rn(63.0f, max_scale) : 0.0f;
  const float inv_min = max_min > 0.0f ? m::div_rn(63.0f, max_min) : 0.0f;
  uint8_t ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = static_cast<uint8_t>(nearest_int(m::mul_rn(inv_scale, scales[j])));
    lm[j] = static_cast<uint8_t>(nearest_int(m::mul_rn(inv_min, mins[j])));
    ls[j] = ls[j] > 63 ? 63 : ls[j];
    lm[j] = lm[j] > 63 ? 63 : lm[j];
  }
  pack_scale_min_k(ls, lm, out + kScalesOffset);
  store_half(out, m::div_rn(max_scale, 63.0f));
  store_half(out + kDminOffset, m::div_rn(max_min, 63.0f));
  // Codes against the stored (rounded) parameters. A sub-block whose scale rounds to 0 keeps the
  // codes of its fit, as ggml does (they dequantize to -dmin*m whatever they are).
  const float d = half_at(out), dmin = half_at(out + kDminOffset);
  for (int j = 0; j < 8; ++j) {
    const float dj = m::mul_rn(d, static_cast<float>(ls[j]));
    if (dj == 0.0f) continue;
    const float dm = m::mul_rn(dmin, static_cast<float>(lm[j]));
    for (int i = 0; i < 32; ++i) L[32 * j + i] = affine_k_code<kNmax>(x[32 * j + i], dj, dm);
  }
  pack_codes_affine_k<kNmax>(L, out);
}

// One Q4_K or Q5_K block -> 256 floats (ggml's dequantize_row_q4_K / q5_K).
template <int kNmax>
QAT_HD void dequantize_block_affine_k(const uint8_t* blk, float* y) {
  const float d = half_at(blk), dmin = half_at(blk + kDminOffset);
  const uint8_t* packed = blk + kScalesOffset;
  const uint8_t* qh = blk + kQ5KQhOffset;
  const uint8_t* qs = blk + kAffineQsOffset<kNmax>;
  for (int j = 0; j < 8; ++j) {
    int sc = 0, mn = 0;
    q4k_scale_min(j, packed, &sc, &mn);
    const float dj = m::mul_rn(d, static_cast<float>(sc));
    const float mj = m::mul_rn(dmin, static_cast<float>(mn));
    const int shift = 4 * (j & 1);
    for (int l = 0; l < 32; ++l) {
      int q = (qs[32 * (j >> 1) + l] >> shift) & 0x0f;
      if (kNmax == 31) q |= ((qh[l] >> j) & 1) << 4;
      y[32 * j + l] = m::add_rn(m::mul_rn(dj, static_cast<float>(q)), -mj);
    }
  }
}

// ---- Q6_K -----------------------------------------------------------------------------------

// One sub-block of 16: a signed scale for codes in -32..31 (ggml's make_qx_quants with nmax 32,
// weights x^2, and 18 candidate grids around -32/max). L gets code + 32.
QAT_HD float q6k_fit_subblock(const float* x, uint8_t* L) {
  constexpr int n = 16;
  constexpr int nmax = 32;
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {  // ggml's GROUP_MAX_EPS
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  auto code = [](float v) {
    const int l = nearest_int(v);
    return l < -nmax ? -nmax : (l > nmax - 1 ? nmax - 1 : l);
  };
  float iscale = m::div_rn(static_cast<float>(-nmax), max);
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = code(m::mul_rn(iscale, x[i]));
    L[i] = static_cast<uint8_t>(l + nmax);
    const float w = m::mul_rn(x[i], x[i]);
    sumlx = m::add_rn(sumlx, m::mul_rn(m::mul_rn(w, x[i]), static_cast<float>(l)));
    suml2 = m::add_rn(suml2, m::mul_rn(m::mul_rn(w, static_cast<float>(l)), static_cast<float>(l)));
  }
  float scale = suml2 != 0.0f ? m::div_rn(sumlx, suml2) : 0.0f;
  float best = m::mul_rn(scale, sumlx);
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = m::div_rn(
        -m::add_rn(static_cast<float>(nmax), m::mul_rn(0.1f, static_cast<float>(is))), max);
    sumlx = 0.0f;
    suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = code(m::mul_rn(iscale, x[i]));
      const float w = m::mul_rn(x[i], x[i]);
      sumlx = m::add_rn(sumlx, m::mul_rn(m::mul_rn(w, x[i]), static_cast<float>(l)));
      suml2 =
          m::add_rn(suml2, m::mul_rn(m::mul_rn(w, static_cast<float>(l)), static_cast<float>(l)));
    }
    if (suml2 > 0.0f && m::mul_rn(sumlx, sumlx) > m::mul_rn(best, suml2)) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(code(m::mul_rn(iscale, x[i])) + nmax);
      scale = m::div_rn(sumlx, suml2);
      best = m::mul_rn(scale, sumlx);
    }
  }
  return scale;
}

#if !defined(__CUDA_ARCH__)
// Eight Q6_K sub-blocks of 16 fitted in lockstep on the host: q6k_fit_subblock's operations in
// every lane, in its order (same bits; tested against it and against ggml). As in the Q4_K fit,
// each lane remembers the grid its best fit came from and the codes are computed once at the end.
inline void q6k_fit_8_subblocks(const float* x, uint8_t* L, float* scale_out) {
  constexpr int n = 16, nmax = 32;
  const Lanes zero = {};
  Lanes xt[n];  // element i of sub-block j in lane j of xt[i]
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < 8; ++j) xt[i][j] = x[n * j + i];
  }
  Lanes max = zero, amax = zero;
  for (int i = 0; i < n; ++i) {
    Lanes ax;
    lanes_abs(xt[i], ax);
    const LaneInts larger = ax > amax;
    amax = larger ? ax : amax;
    max = larger ? xt[i] : max;
  }
  const LaneInts tiny = amax < 1e-15f;  // ggml's GROUP_MAX_EPS: all codes 0, scale 0
  // sum x^3 l and sum x^2 l^2 over a sub-block, l the codes of the grid `iscale`.
  Lanes sumlx, suml2;
  auto grid_sums = [&](const Lanes& iscale) {
    sumlx = zero;
    suml2 = zero;
    for (int i = 0; i < n; ++i) {
      LaneInts l;
      lanes_codes<-nmax, nmax - 1>(iscale * xt[i], l);
      const Lanes lf = __builtin_convertvector(l, Lanes);
      const Lanes w = xt[i] * xt[i];
      sumlx = sumlx + (w * xt[i]) * lf;
      suml2 = suml2 + (w * lf) * lf;
    }
  };
  Lanes iscale = static_cast<float>(-nmax) / max;
  Lanes code_iscale = iscale;
  grid_sums(iscale);
  Lanes scale = suml2 != zero ? sumlx / suml2 : zero;
  Lanes best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    grid_sums(iscale);
    const LaneInts win = (suml2 > zero) & (sumlx * sumlx > best * suml2) & ~tiny;
    const Lanes this_scale = sumlx / suml2;
    code_iscale = win ? iscale : code_iscale;
    scale = win ? this_scale : scale;
    best = win ? this_scale * sumlx : best;
  }
  for (int i = 0; i < n; ++i) {
    LaneInts l;
    lanes_codes<-nmax, nmax - 1>(code_iscale * xt[i], l);
    for (int j = 0; j < 8; ++j)
      L[n * j + i] = tiny[j] ? uint8_t{0} : static_cast<uint8_t>(l[j] + nmax);
  }
  for (int j = 0; j < 8; ++j) scale_out[j] = tiny[j] ? 0.0f : scale[j];
}
#endif

// ggml's stored code (level + 32) of x in a Q6_K sub-block of scale db (!= 0):
// clamp(nearest(x / db), -32, 31) + 32.
// (Clamped to [-33, 32] first, as affine_k_code.)
QAT_HD uint8_t q6k_code(float x, float db) {
  int l = nearest_int(m::fmin_f(m::fmax_f(m::div_rn(x, db), -33.0f), 32.0f));
  l = l < -32 ? -32 : (l > 31 ? 31 : l);
  return static_cast<uint8_t>(l + 32);
}

// The 256 stored codes of a Q6_K block into its ql and qh bytes. In each half of 128, element
// 32s + l (s = 0..3) keeps its low nibble in ql[64h + l + 32(s&1)] (low nibble for s < 2, high
// for s >= 2) and its top 2 bits at qh[32h + l] >> 2s.
QAT_HD void pack_codes_q6k(const uint8_t* L, uint8_t* out) {
  uint8_t* ql = out;
  uint8_t* qh = out + kQ6KQhOffset;
  for (int h = 0; h < 2; ++h) {
    const uint8_t* Lh = L + 128 * h;
    for (int l = 0; l < 32; ++l) {
      ql[64 * h + l] = static_cast<uint8_t>((Lh[l] & 0x0f) | ((Lh[l + 64] & 0x0f) << 4));
      ql[64 * h + l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0x0f) | ((Lh[l + 96] & 0x0f) << 4));
      qh[32 * h + l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                            ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
    }
  }
}

// x: 256 finite floats -> one 210-byte block (ggml's quantize_row_q6_K_ref).
QAT_HD void quantize_block_q6k(const float* x, uint8_t* out) {
  uint8_t L[kSuperBlock];
  float scales[16];
  float max_scale = 0.0f, max_abs_scale = 0.0f;
#if defined(__CUDA_ARCH__)  // a GPU thread fits one sub-block after another; the host 8 at once
  for (int b = 0; b < 16; ++b) scales[b] = q6k_fit_subblock(x + 16 * b, L + 16 * b);
#else
  q6k_fit_8_subblocks(x, L, scales);
  q6k_fit_8_subblocks(x + 128, L + 128, scales + 8);
#endif
  for (int b = 0; b < 16; ++b) {
    const float a = fabsf(scales[b]);
    if (a > max_abs_scale) {
      max_abs_scale = a;
      max_scale = scales[b];
    }
  }
  if (max_abs_scale < 1e-15f) {  // an all-zero block: every byte 0 (d = +0)
    for (int i = 0; i < static_cast<int>(sizeof(BlockQ6_K)); ++i) out[i] = 0;
    return;
  }
  // The 16 scales become int8 multiples of the fp16 d = max_scale / -128.
  const float iscale = m::div_rn(-128.0f, max_scale);
  store_half(out + kQ6KDOffset, m::div_rn(1.0f, iscale));
  int8_t* sc = reinterpret_cast<int8_t*>(out + kQ6KScalesOffset);
  for (int b = 0; b < 16; ++b) {
    const int v = nearest_int(m::mul_rn(iscale, scales[b]));
    sc[b] = static_cast<int8_t>(v > 127 ? 127 : v);
  }
  const float d = half_at(out + kQ6KDOffset);
  for (int b = 0; b < 16; ++b) {
    const float db = m::mul_rn(d, static_cast<float>(sc[b]));
    if (db == 0.0f) continue;  // keeps the fit's codes, as ggml (they dequantize to 0)
    for (int i = 0; i < 16; ++i) L[16 * b + i] = q6k_code(x[16 * b + i], db);
  }
  pack_codes_q6k(L, out);
}

// One 210-byte block -> 256 floats (ggml's dequantize_row_q6_K).
QAT_HD void dequantize_block_q6k(const uint8_t* blk, float* y) {
  const uint8_t* ql = blk;
  const uint8_t* qh = blk + kQ6KQhOffset;
  const int8_t* sc = reinterpret_cast<const int8_t*>(blk + kQ6KScalesOffset);
  const float d = half_at(blk + kQ6KDOffset);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      for (int l = 0; l < 32; ++l) {
        const int lo = (ql[64 * h + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 0x0f;
        const int hi = (qh[32 * h + l] >> (2 * s)) & 0x03;
        const int e = 128 * h + 32 * s + l;
        const float ds = m::mul_rn(d, static_cast<float>(sc[e / 16]));
        y[e] = m::mul_rn(ds, static_cast<float>((lo | (hi << 4)) - 32));
      }
    }
  }
}

// ---- blocks from given parameters (learned scales) -------------------------------------------
//
// What a trained k-quant layer exports: the super-block d (and dmin) and the sub-block scale (and
// min) codes are the layer's learned ones, and each element takes the code ggml's final rounding
// gives it against them (the step after the search in quantize_block_*): so dequantizing the block
// gives the layer's fake-quant forward. A sub-block whose scale is 0 gets code 0 (level 0 in Q6_K);
// it dequantizes to -dmin*m (0) whatever its codes are.

// One element against a stored sub-block scale and min: what dequantizing its code gives (GPTQ
// rounds one element at a time, ops/element_fake_quant.h). Q4_K/Q5_K: y = dj * L - dm; Q6_K:
// y = db * (L - 32); L from the codes above (0 where the scale is 0).
template <int kNmax>
QAT_HD float fake_quant_affine_k_value(float x, float dj, float dm) {
  const float q = dj == 0.0f ? 0.0f : static_cast<float>(affine_k_code<kNmax>(x, dj, dm));
  return m::add_rn(m::mul_rn(dj, q), -dm);
}
QAT_HD float fake_quant_q6k_value(float x, float db) {
  const float q = db == 0.0f ? 0.0f : static_cast<float>(static_cast<int>(q6k_code(x, db)) - 32);
  return m::mul_rn(db, q);
}

// Q4_K/Q5_K: d and dmin fp16 values, ls and lm the eight 6-bit scale and min codes (0..63).
template <int kNmax>
QAT_HD void quantize_block_affine_k_with(const float* x, float d_in, float dmin_in,
                                         const uint8_t* ls, const uint8_t* lm, uint8_t* out) {
  uint8_t L[kSuperBlock];
  store_half(out, d_in);
  store_half(out + kDminOffset, dmin_in);
  pack_scale_min_k(ls, lm, out + kScalesOffset);
  const float d = half_at(out), dmin = half_at(out + kDminOffset);
  for (int j = 0; j < 8; ++j) {
    const float dj = m::mul_rn(d, static_cast<float>(ls[j]));
    const float dm = m::mul_rn(dmin, static_cast<float>(lm[j]));
    for (int i = 0; i < 32; ++i)
      L[32 * j + i] = dj == 0.0f ? uint8_t{0} : affine_k_code<kNmax>(x[32 * j + i], dj, dm);
  }
  pack_codes_affine_k<kNmax>(L, out);
}

// Q6_K: d an fp16 value (signed), sc the sixteen int8 scale codes.
QAT_HD void quantize_block_q6k_with(const float* x, float d_in, const int8_t* sc, uint8_t* out) {
  uint8_t L[kSuperBlock];
  store_half(out + kQ6KDOffset, d_in);
  int8_t* scales = reinterpret_cast<int8_t*>(out + kQ6KScalesOffset);
  for (int b = 0; b < 16; ++b) scales[b] = sc[b];
  const float d = half_at(out + kQ6KDOffset);
  for (int b = 0; b < 16; ++b) {
    const float db = m::mul_rn(d, static_cast<float>(sc[b]));
    for (int i = 0; i < 16; ++i)
      L[16 * b + i] = db == 0.0f ? uint8_t{32} : q6k_code(x[16 * b + i], db);
  }
  pack_codes_q6k(L, out);
}

// The parameters a block holds: d, dmin (Q4_K/Q5_K; 0 for Q6_K) and the sub-block scale codes
// (8 for Q4_K/Q5_K, 16 for Q6_K) and min codes (Q4_K/Q5_K), as floats.
QAT_HD void read_block_params(scheme::Format f, const uint8_t* blk, float* d, float* dmin,
                              float* scales, float* mins) {
  if (f == scheme::Format::kQ6_K) {
    *d = half_at(blk + kQ6KDOffset);
    *dmin = 0.0f;
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + kQ6KScalesOffset);
    for (int b = 0; b < 16; ++b) scales[b] = static_cast<float>(sc[b]);
    return;
  }
  *d = half_at(blk);
  *dmin = half_at(blk + kDminOffset);
  for (int j = 0; j < 8; ++j) {
    int sc = 0, mn = 0;
    q4k_scale_min(j, blk + kScalesOffset, &sc, &mn);
    scales[j] = static_cast<float>(sc);
    mins[j] = static_cast<float>(mn);
  }
}

// ---- dispatch on the format -----------------------------------------------------------------
//
// The switches list every Format, with no default, so -Wswitch names them when one is added. Device
// code cannot throw: the front-ends (ops/kquant.cpp, qat/io/gguf_blocks.cpp) accept k-quants only,
// and a format that is not one quantizes to nothing and dequantizes to NaN.

// Bytes of one block of `f` (0 for a format that is not a k-quant). A switch rather than a look
// into scheme::kFormatTraits, which is host memory; blocks.h ties the sizes to the table.
QAT_HD int block_bytes(scheme::Format f) {
  switch (f) {
    case scheme::Format::kQ4_K:
      return sizeof(BlockQ4_K);
    case scheme::Format::kQ5_K:
      return sizeof(BlockQ5_K);
    case scheme::Format::kQ6_K:
      return sizeof(BlockQ6_K);
    case scheme::Format::kInt:
    case scheme::Format::kUInt:
    case scheme::Format::kFp8E4M3:
    case scheme::Format::kFp8E5M2:
    case scheme::Format::kNf4:
    case scheme::Format::kQ8_0:
    case scheme::Format::kQ4_0:
    case scheme::Format::kQ4_1:
    case scheme::Format::kQ5_0:
    case scheme::Format::kQ5_1:
      break;  // not a k-quant
  }
  return 0;
}

QAT_HD void quantize_block(scheme::Format f, const float* x, uint8_t* out) {
  switch (f) {
    case scheme::Format::kQ4_K:
      quantize_block_affine_k<15>(x, out);
      return;
    case scheme::Format::kQ5_K:
      quantize_block_affine_k<31>(x, out);
      return;
    case scheme::Format::kQ6_K:
      quantize_block_q6k(x, out);
      return;
    case scheme::Format::kInt:
    case scheme::Format::kUInt:
    case scheme::Format::kFp8E4M3:
    case scheme::Format::kFp8E5M2:
    case scheme::Format::kNf4:
    case scheme::Format::kQ8_0:
    case scheme::Format::kQ4_0:
    case scheme::Format::kQ4_1:
    case scheme::Format::kQ5_0:
    case scheme::Format::kQ5_1:
      return;  // not a k-quant: no block (block_bytes is 0)
  }
}
QAT_HD void dequantize_block(scheme::Format f, const uint8_t* blk, float* y) {
  switch (f) {
    case scheme::Format::kQ4_K:
      dequantize_block_affine_k<15>(blk, y);
      return;
    case scheme::Format::kQ5_K:
      dequantize_block_affine_k<31>(blk, y);
      return;
    case scheme::Format::kQ6_K:
      dequantize_block_q6k(blk, y);
      return;
    case scheme::Format::kInt:
    case scheme::Format::kUInt:
    case scheme::Format::kFp8E4M3:
    case scheme::Format::kFp8E5M2:
    case scheme::Format::kNf4:
    case scheme::Format::kQ8_0:
    case scheme::Format::kQ4_0:
    case scheme::Format::kQ4_1:
    case scheme::Format::kQ5_0:
    case scheme::Format::kQ5_1:
      break;  // not a k-quant
  }
  for (int i = 0; i < kSuperBlock; ++i) y[i] = NAN;
}
// In place: x (256 floats) -> dequantize(quantize(x)); all NaN when x holds a non-finite value.
QAT_HD void fake_quant_block(scheme::Format f, float* x) {
  if (!all_finite(x, kSuperBlock)) {
    for (int i = 0; i < kSuperBlock; ++i) x[i] = NAN;
    return;
  }
  uint8_t blk[kMaxBlockBytes];
  quantize_block(f, x, blk);
  dequantize_block(f, blk, x);
}

}  // namespace qat::ops::kquant
