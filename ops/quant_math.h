// Scalar quantization math shared by the CPU reference and the CUDA kernels.
//
// This header is the numerics contract in code. Both backends call the same functions, with the
// same operation order, and every float operation is rounded on its own (no FMA contraction:
// the host builds with -ffp-contract=off, the device uses __fmul_rn/__fadd_rn). That is what makes
// fake_quant(x) == dequantize(quantize(x)) hold bit for bit, and CUDA == CPU on codes.
//
// Per group the flow is:
//   stats (min, max, max|x|, signed max)  --group_scale-->  (scale, zero)
//   (scale, zero) --make_group_qparams-->  GroupQParams (what quantize/dequantize read)
//   x --quantize_value--> code --dequantize_value--> y
//
// Conventions (docs/numerics.md explains each choice):
// - Every format multiplies by the reciprocal of its fp32 scale, inv = 1/scale, as ATen's
//   fake_quantize_* and torchao do; ggml and bitsandbytes do the same for their formats.
// - Integer formats round half to even (nearbyint); ggml's Q8_0 rounds half away from zero
//   (roundf) and Q4_0/Q5_0/Q4_1/Q5_1 truncate after adding 8.5/16.5/0.5/0.5, as ggml's reference
//   quantizers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "qat/scheme/format.h"

#if defined(__CUDACC__)
#define QAT_HD __host__ __device__ __forceinline__
#define QAT_UNROLL _Pragma("unroll")
#else
#define QAT_HD inline
#define QAT_UNROLL
#endif
// A lookup table inside a QAT_HD function: static on the host, so it is not rebuilt on the stack
// at every call (a 256-entry table once cost more than the search that reads it); device code
// keeps a plain constexpr array, which nvcc places in constant or local memory itself.
#if defined(__CUDA_ARCH__)
#define QAT_TABLE constexpr
#else
#define QAT_TABLE static constexpr
#endif

namespace qat::ops::math {

using scheme::Format;
using scheme::ScaleDtype;

// ---- float operations rounded one at a time ------------------------------------------------

QAT_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);  // forbids nvcc from fusing this product into an FMA
#else
  return a * b;
#endif
}
QAT_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
QAT_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);  // IEEE division even if someone builds with --use_fast_math
#else
  return a / b;
#endif
}
// Round half to even (the default rounding mode on both sides), half away from zero, toward zero.
//
// On the host these are written without branches or libm calls so that the CPU loops vectorize:
// x86-64's baseline (SSE2) has no rounding instruction, and std::nearbyint/round/trunc are a libm
// call per element there. Each gives the libm result bit for bit:
// - For |v| >= 2^23 every float is an integer already, and infinities and NaN pass through too.
// - Below 2^23, (|v| + 2^23) - 2^23 rounds |v| to an integer in the FPU, half to even: the sum
//   lies in [2^23, 2^24), where the floats are exactly the integers, and the subtraction is exact.
// - Below 2^23, truncation is the int32 conversion. Its input is selected into range first, so
//   the conversion never sees NaN or a huge value and can run on every lane.
// - copysign keeps the sign of a zero result (-0.3 rounds to -0, as in libm).
#if !defined(__CUDA_ARCH__)
constexpr float kTwo23 = 8388608.0f;     // 2^23: from here on every float is an integer
QAT_HD float trunc_abs_small(float a) {  // trunc(a) for 0 <= a < 2^23, else 0 (never converts NaN)
  return static_cast<float>(static_cast<int32_t>(a < kTwo23 ? a : 0.0f));
}
#endif
QAT_HD float round_even(float v) {
#if defined(__CUDA_ARCH__)
  return rintf(v);
#else
  const float a = std::fabs(v);
  const float r = std::copysign((a + kTwo23) - kTwo23, v);
  return a < kTwo23 ? r : v;
#endif
}
QAT_HD float round_away(float v) {
#if defined(__CUDA_ARCH__)
  return roundf(v);
#else
  const float a = std::fabs(v);
  const float t = trunc_abs_small(a);
  const float r = std::copysign(a - t >= 0.5f ? t + 1.0f : t, v);  // a - t is exact
  return a < kTwo23 ? r : v;
#endif
}
QAT_HD float trunc_f(float v) {
#if defined(__CUDA_ARCH__)
  return truncf(v);
#else
  const float a = std::fabs(v);
  const float r = std::copysign(trunc_abs_small(a), v);
  return a < kTwo23 ? r : v;
#endif
}
QAT_HD float fmin_f(float a, float b) {
  return a < b ? a : b;
}
QAT_HD float fmax_f(float a, float b) {
  return a > b ? a : b;
}
QAT_HD bool is_nan(float v) {
  return v != v;
}

QAT_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}
QAT_HD float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

// ---- fp16 / bf16 storage of scales (round to nearest even) ------------------------------------

// IEEE binary16 from float, round to nearest even, overflow to inf, NaN kept.
QAT_HD uint16_t float_to_half_bits(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u)
    return static_cast<uint16_t>(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (ax < 0x38800000u) {
    // Subnormal (or zero) in binary16: value = m * 2^-24. Adding 0.5f shifts the mantissa so the
    // FPU's own round-to-nearest-even does the rounding (exact: both operands are in range).
    const float r = add_rn(bits_float(ax), 0.5f);
    return static_cast<uint16_t>(sign | (float_bits(r) - 0x3f000000u));
  }
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even.
  const uint32_t odd = (ax >> 13) & 1u;
  const uint32_t r = ax + 0xc8000fffu + odd;  // = ax - (112 << 23) + 0xfff + odd  (mod 2^32)
  return static_cast<uint16_t>(sign | (r >> 13));
}
QAT_HD float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  if (e == 0) {
    // m * 2^-24, exact in float
    const float v = mul_rn(static_cast<float>(m), 5.9604644775390625e-08f);
    return bits_float(float_bits(v) | sign);
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}
QAT_HD uint16_t float_to_bf16_bits(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
QAT_HD float bf16_bits_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

// A scale as its storage dtype holds it: rounded to nearest even; +-inf becomes the largest
// finite value of the dtype.
QAT_HD float round_scale(float s, ScaleDtype dt) {
  switch (dt) {
    case ScaleDtype::kFloat16: {
      float r = half_bits_to_float(float_to_half_bits(s));
      return r > 65504.0f ? 65504.0f : (r < -65504.0f ? -65504.0f : r);
    }
    case ScaleDtype::kBFloat16: {
      float r = bf16_bits_to_float(float_to_bf16_bits(s));
      const float kMax = 3.3895313892515355e+38f;
      return r > kMax ? kMax : (r < -kMax ? -kMax : r);
    }
    case ScaleDtype::kFloat32:
      break;
  }
  return s;
}

// ---- fp8 (OCP e4m3fn and e5m2), saturating, round to nearest even ------------------------------

template <int kExpBits, int kManBits>
struct Fp8Spec {
  static constexpr int kMan = kManBits;
  static constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  // Largest finite code magnitude: e4m3fn has no inf, so only S.1111.111 is NaN (max S.1111.110);
  // e5m2 reserves the top exponent for inf/NaN (max S.11110.11).
  static constexpr uint32_t kMaxCode = kExpBits == 4 ? 0x7eu : 0x7bu;
  static constexpr float kMax = kExpBits == 4 ? 448.0f : 57344.0f;
  static constexpr uint32_t kNanCode = 0x7fu;
};
using E4M3 = Fp8Spec<4, 3>;
using E5M2 = Fp8Spec<5, 2>;

template <typename S>
QAT_HD uint8_t float_to_fp8(float f) {
  constexpr int kManBits = S::kMan;
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 24) & 0x80u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint8_t>(sign | S::kNanCode);
  const float a = bits_float(ax);
  if (a >= S::kMax) return static_cast<uint8_t>(sign | S::kMaxCode);  // saturate (inf too)
  // Smallest normal is 2^(1-bias). Below it the grid is uniform with step 2^(1-bias-man):
  // scale by the inverse power of two (exact) and round to an integer mantissa.
  const float min_normal = bits_float(static_cast<uint32_t>(127 + 1 - S::kBias) << 23);
  if (a < min_normal) {
    const float step_inv = bits_float(static_cast<uint32_t>(127 + S::kBias - 1 + kManBits) << 23);
    const uint32_t m = static_cast<uint32_t>(round_even(mul_rn(a, step_inv)));  // 0 .. 2^man
    return static_cast<uint8_t>(sign | m);  // m == 2^man lands exactly on the smallest normal
  }
  constexpr int kDrop = 23 - kManBits;
  const uint32_t odd = (ax >> kDrop) & 1u;
  uint32_t r = (ax + ((1u << (kDrop - 1)) - 1u) + odd) >> kDrop;  // RNE on the dropped bits
  r -= static_cast<uint32_t>(127 - S::kBias) << kManBits;         // rebias the exponent
  if (r > S::kMaxCode) r = S::kMaxCode;                           // rounded past the max
  return static_cast<uint8_t>(sign | r);
}

template <typename S>
QAT_HD float fp8_to_float(uint8_t c) {
  constexpr int kManBits = S::kMan;
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t e = (c >> kManBits) & ((1u << (8 - 1 - kManBits)) - 1u);
  const uint32_t m = c & ((1u << kManBits) - 1u);
  const uint32_t kExpMax = (1u << (8 - 1 - kManBits)) - 1u;
  if (kManBits == 3 && e == kExpMax && m == 7u) return bits_float(sign | 0x7fc00000u);
  if (kManBits == 2 && e == kExpMax) return bits_float(sign | (m ? 0x7fc00000u : 0x7f800000u));
  if (e == 0) {
    const float step = bits_float(static_cast<uint32_t>(127 + 1 - S::kBias - kManBits) << 23);
    return bits_float(float_bits(mul_rn(static_cast<float>(m), step)) | sign);
  }
  return bits_float(sign | ((e + 127u - S::kBias) << 23) | (m << (23 - kManBits)));
}

// ---- NF4 (bitsandbytes) ---------------------------------------------------------------------

// The 16 NF4 values (bitsandbytes' table, float32).
QAT_HD float nf4_value(int code) {
  QAT_TABLE float kValues[16] = {-1.0f,
                                 -0.6961928009986877f,
                                 -0.5250730514526367f,
                                 -0.39491748809814453f,
                                 -0.28444138169288635f,
                                 -0.18477343022823334f,
                                 -0.09105003625154495f,
                                 0.0f,
                                 0.07958029955625534f,
                                 0.16093020141124725f,
                                 0.24611230194568634f,
                                 0.33791524171829224f,
                                 0.44070982933044434f,
                                 0.5626170039176941f,
                                 0.7229568362236023f,
                                 1.0f};
  return kValues[code];
}
// Code of y = x/absmax: the number of the 15 decision thresholds that y is strictly greater
// than. Threshold k is the float32 midpoint (v[k] + v[k+1]) * 0.5 of the table, as bitsandbytes'
// CPU quantizer computes it (the NF4 tensor, ops/nf4_math.h, is tested byte-exact against it), so
// fake quant in the nf4 format and the NF4 tensor code every value alike. bitsandbytes' CUDA
// kernel compares against decimal literals instead, 1 ulp away at k = 0, 12, 14: only a y exactly
// on one of those floats codes differently there. Ties go to the lower code; NaN compares false
// everywhere and gives code 0. The table is folded at compile time (IEEE float sum, exact halving).
QAT_HD int nf4_code(float y) {
  QAT_TABLE float kV[16] = {-1.0f,
                            -0.6961928009986877f,
                            -0.5250730514526367f,
                            -0.39491748809814453f,
                            -0.28444138169288635f,
                            -0.18477343022823334f,
                            -0.09105003625154495f,
                            0.0f,
                            0.07958029955625534f,
                            0.16093020141124725f,
                            0.24611230194568634f,
                            0.33791524171829224f,
                            0.44070982933044434f,
                            0.5626170039176941f,
                            0.7229568362236023f,
                            1.0f};
  QAT_TABLE float kThresholds[15] = {
      (kV[0] + kV[1]) * 0.5f,   (kV[1] + kV[2]) * 0.5f,   (kV[2] + kV[3]) * 0.5f,
      (kV[3] + kV[4]) * 0.5f,   (kV[4] + kV[5]) * 0.5f,   (kV[5] + kV[6]) * 0.5f,
      (kV[6] + kV[7]) * 0.5f,   (kV[7] + kV[8]) * 0.5f,   (kV[8] + kV[9]) * 0.5f,
      (kV[9] + kV[10]) * 0.5f,  (kV[10] + kV[11]) * 0.5f, (kV[11] + kV[12]) * 0.5f,
      (kV[12] + kV[13]) * 0.5f, (kV[13] + kV[14]) * 0.5f, (kV[14] + kV[15]) * 0.5f};
  int code = 0;
  QAT_UNROLL
  for (int k = 0; k < 15; ++k) code += y > kThresholds[k] ? 1 : 0;
  return code;
}

// ---- per-group parameters -------------------------------------------------------------------

// What a group's elements need on the way in and out. Built once per group.
struct GroupQParams {
  float inv_scale;  // x is multiplied by this on the way in (0 when the scale is 0)
  float zero;       // uint: integer zero point; q4_1/q5_1: the fp32 block min; else 0
  float deq_scale;  // the code is multiplied by this on the way out (GGUF: the fp16-rounded d)
  float deq_zero;   // uint: the zero point; q4_1/q5_1: the fp16-rounded min; else 0
  int qmin;         // integer code range (int/uint)
  int qmax;
};

// Statistics of one group, gathered in one pass.
struct GroupStats {
  float min;
  float max;
  float amax;         // max |x|
  float signed_amax;  // the element of largest |x| (first one on ties), sign kept (ggml Q4_0)
};
// A total order on floats for min/max that also orders -0 below +0, so a reduction gives the
// same bits in any order (the CUDA tree and the CPU scan agree on signed zeros too).
QAT_HD bool less_total(float a, float b) {
  return a < b || (a == b && (float_bits(a) >> 31) > (float_bits(b) >> 31));
}
QAT_HD GroupStats stats_init() {
  return {INFINITY, -INFINITY, 0.0f, 0.0f};
}
// NaN elements are skipped (every comparison with NaN is false), so statistics never hold NaN
// and merging them is commutative; the NaN elements themselves fake-quantize to NaN.
QAT_HD void stats_add(GroupStats& s, float x) {
  if (less_total(x, s.min)) s.min = x;
  if (less_total(s.max, x)) s.max = x;
  const float a = fabsf(x);
  if (a > s.amax) {  // strict: the first element with the largest |x| wins, as in ggml
    s.amax = a;
    s.signed_amax = x;
  }
}

// Scale and zero of a group from its statistics (min-max range setting). For int/uint/fp8 a
// clipped range (percentile, MSE search, a calibrated observer) enters through `range_to_scale`
// below instead. The scale is rounded to its storage dtype here, so quantize and dequantize read
// the same value; a zero or non-finite scale (an all-zero group) becomes 1.
struct ScaleZero {
  float scale;
  float zero;
};
QAT_HD float sanitize_scale(float s, ScaleDtype dt) {
  s = round_scale(s, dt);
  return (s > 0.0f && s < INFINITY) ? s : 1.0f;
}
// int/uint/fp8 from a range [lo, hi]: symmetric formats use max(|lo|, |hi|).
QAT_HD ScaleZero range_to_scale(Format f, int bits, ScaleDtype dt, float lo, float hi) {
  switch (f) {
    case Format::kInt: {
      const float amax = fmax_f(fabsf(lo), fabsf(hi));
      return {sanitize_scale(div_rn(amax, static_cast<float>((1 << (bits - 1)) - 1)), dt), 0.0f};
    }
    case Format::kUInt: {
      // torch/torchao: the range always contains 0 so that 0 is exact; zero point = qmin -
      // round(lo/scale), clamped to the code range.
      lo = fmin_f(lo, 0.0f);
      hi = fmax_f(hi, 0.0f);
      const float qmax = static_cast<float>((1 << bits) - 1);
      const float scale = sanitize_scale(div_rn(add_rn(hi, -lo), qmax), dt);
      const float zp = fmin_f(fmax_f(-round_even(div_rn(lo, scale)), 0.0f), qmax);
      return {scale, zp};
    }
    case Format::kFp8E4M3:
      return {sanitize_scale(div_rn(fmax_f(fabsf(lo), fabsf(hi)), E4M3::kMax), dt), 0.0f};
    case Format::kFp8E5M2:
      return {sanitize_scale(div_rn(fmax_f(fabsf(lo), fabsf(hi)), E5M2::kMax), dt), 0.0f};
    case Format::kNf4:
      return {fmax_f(fabsf(lo), fabsf(hi)), 0.0f};  // absmax, kept in fp32 as bitsandbytes
    case Format::kQ8_0:
    case Format::kQ4_0:
    case Format::kQ4_1:
    case Format::kQ5_0:
    case Format::kQ5_1:
    case Format::kQ4_K:
    case Format::kQ5_K:
    case Format::kQ6_K:
      break;  // GGUF formats use group_scale (they need the signed max); k-quants ops/kquant.h
  }
  // No default above, so -Wswitch names this switch when a Format is added. Device code cannot
  // throw: a format without a range rule gets a zero scale (the front-ends never pass one).
  return {0.0f, 0.0f};
}
QAT_HD ScaleZero group_scale(Format f, int bits, ScaleDtype dt, const GroupStats& s) {
  switch (f) {
    case Format::kQ8_0:  // ggml: d = amax / 127
      return {div_rn(s.amax, 127.0f), 0.0f};
    case Format::kQ4_0:  // ggml: d = max / -8, max = the signed element of largest |x|
      return {div_rn(s.signed_amax, -8.0f), 0.0f};
    case Format::kQ5_0:  // ggml: d = max / -16, the same signed max
      return {div_rn(s.signed_amax, -16.0f), 0.0f};
    case Format::kQ4_1:  // ggml: d = (max - min) / 15, m = min
      return {div_rn(add_rn(s.max, -s.min), 15.0f), s.min};
    case Format::kQ5_1:  // ggml: d = (max - min) / 31, m = min
      return {div_rn(add_rn(s.max, -s.min), 31.0f), s.min};
    case Format::kInt:
    case Format::kUInt:
    case Format::kFp8E4M3:
    case Format::kFp8E5M2:
    case Format::kNf4:
    case Format::kQ4_K:  // k-quants: no per-group scale (range_to_scale gives 0)
    case Format::kQ5_K:
    case Format::kQ6_K:
      break;
  }
  return range_to_scale(f, bits, dt, s.min, s.max);
}

QAT_HD GroupQParams make_group_qparams(Format f, int bits, float scale, float zero) {
  GroupQParams g{};
  g.inv_scale = scale != 0.0f ? div_rn(1.0f, scale) : 0.0f;
  g.deq_scale = scale;
  switch (f) {
    case Format::kInt:
      g.qmin = -(1 << (bits - 1));
      g.qmax = (1 << (bits - 1)) - 1;
      break;
    case Format::kUInt:
      g.qmin = 0;
      g.qmax = (1 << bits) - 1;
      g.zero = zero;
      g.deq_zero = zero;
      break;
    case Format::kQ8_0:
    case Format::kQ4_0:
    case Format::kQ5_0:
      g.deq_scale = half_bits_to_float(float_to_half_bits(scale));
      break;
    case Format::kQ4_1:
    case Format::kQ5_1:
      g.zero = zero;
      g.deq_scale = half_bits_to_float(float_to_half_bits(scale));
      g.deq_zero = half_bits_to_float(float_to_half_bits(zero));
      break;
    case Format::kFp8E4M3:  // the code is the scaled value itself
    case Format::kFp8E5M2:
    case Format::kNf4:
    case Format::kQ4_K:  // k-quants: no per-group qparams (ops/kquant.h)
    case Format::kQ5_K:
    case Format::kQ6_K:
      break;
  }
  return g;
}

// ---- one element ----------------------------------------------------------------------------

// The stored code of x (int: two's complement value; others: unsigned 0..255).
template <Format F>
QAT_HD int quantize_value(float x, const GroupQParams& g) {
  if constexpr (F == Format::kInt || F == Format::kUInt) {
    const float v = add_rn(round_even(mul_rn(x, g.inv_scale)), g.zero);
    return static_cast<int>(
        fmin_f(fmax_f(v, static_cast<float>(g.qmin)), static_cast<float>(g.qmax)));
  } else if constexpr (F == Format::kFp8E4M3) {
    return float_to_fp8<E4M3>(mul_rn(x, g.inv_scale));
  } else if constexpr (F == Format::kFp8E5M2) {
    return float_to_fp8<E5M2>(mul_rn(x, g.inv_scale));
  } else if constexpr (F == Format::kNf4) {
    return nf4_code(mul_rn(x, g.inv_scale));
  } else if constexpr (F == Format::kQ8_0) {
    // |x*id| <= 127 for the block's own elements; the clamp only gives NaN a code (-127).
    const float v = round_away(mul_rn(x, g.inv_scale));
    return static_cast<int>(fmin_f(fmax_f(v, -127.0f), 127.0f));
  } else if constexpr (F == Format::kQ4_0) {
    const float v = trunc_f(add_rn(mul_rn(x, g.inv_scale), 8.5f));
    return static_cast<int>(fmin_f(fmax_f(v, 0.0f), 15.0f));
  } else if constexpr (F == Format::kQ5_0) {
    const float v = trunc_f(add_rn(mul_rn(x, g.inv_scale), 16.5f));
    return static_cast<int>(fmin_f(fmax_f(v, 0.0f), 31.0f));
  } else {
    static_assert(F == Format::kQ4_1 || F == Format::kQ5_1, "quantize_value: no rule for F");
    constexpr float kMax = F == Format::kQ5_1 ? 31.0f : 15.0f;
    const float v = trunc_f(add_rn(mul_rn(add_rn(x, -g.zero), g.inv_scale), 0.5f));
    return static_cast<int>(fmin_f(fmax_f(v, 0.0f), kMax));
  }
}

template <Format F>
QAT_HD float dequantize_value(int code, const GroupQParams& g) {
  if constexpr (F == Format::kInt || F == Format::kQ8_0) {
    return mul_rn(static_cast<float>(code), g.deq_scale);
  } else if constexpr (F == Format::kUInt) {
    return mul_rn(add_rn(static_cast<float>(code), -g.deq_zero), g.deq_scale);
  } else if constexpr (F == Format::kFp8E4M3) {
    return mul_rn(fp8_to_float<E4M3>(static_cast<uint8_t>(code)), g.deq_scale);
  } else if constexpr (F == Format::kFp8E5M2) {
    return mul_rn(fp8_to_float<E5M2>(static_cast<uint8_t>(code)), g.deq_scale);
  } else if constexpr (F == Format::kNf4) {
    return mul_rn(nf4_value(code), g.deq_scale);
  } else if constexpr (F == Format::kQ4_0) {
    return mul_rn(static_cast<float>(code - 8), g.deq_scale);
  } else if constexpr (F == Format::kQ5_0) {
    return mul_rn(static_cast<float>(code - 16), g.deq_scale);
  } else {  // y = q*d + m, two roundings (no FMA), as gguf-py's reference
    static_assert(F == Format::kQ4_1 || F == Format::kQ5_1, "dequantize_value: no rule for F");
    return add_rn(mul_rn(static_cast<float>(code), g.deq_scale), g.deq_zero);
  }
}

// Whether x lies inside the representable range (the clipped STE passes gradient only there).
// Integer grids follow ATen: the rounded value before the clamp lies in [qmin, qmax].
template <Format F>
QAT_HD bool in_range(float x, const GroupQParams& g) {
  if constexpr (F == Format::kInt || F == Format::kUInt) {
    const float v = add_rn(round_even(mul_rn(x, g.inv_scale)), g.zero);
    return v >= static_cast<float>(g.qmin) && v <= static_cast<float>(g.qmax);
  } else if constexpr (F == Format::kFp8E4M3) {
    return fabsf(mul_rn(x, g.inv_scale)) <= E4M3::kMax;
  } else if constexpr (F == Format::kFp8E5M2) {
    return fabsf(mul_rn(x, g.inv_scale)) <= E5M2::kMax;
  } else if constexpr (F == Format::kNf4) {
    return fabsf(mul_rn(x, g.inv_scale)) <= 1.0f;
  } else {
    static_assert(F == Format::kQ8_0 || F == Format::kQ4_0 || F == Format::kQ4_1 ||
                      F == Format::kQ5_0 || F == Format::kQ5_1,
                  "in_range: no rule for F");
    return true;  // GGUF blocks always take their range from the block itself
  }
}

// Fake quant of one element: dequantize(quantize(x)); NaN stays NaN so a broken step is seen.
template <Format F>
QAT_HD float fake_quant_value(float x, const GroupQParams& g) {
  const float y = dequantize_value<F>(quantize_value<F>(x, g), g);  // NaN x: a code in range
  return is_nan(x) ? x : y;
}

}  // namespace qat::ops::math
