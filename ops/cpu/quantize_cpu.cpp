#include "ops/cpu/quantize_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "ops/dispatch.h"
#include "ops/element_fake_quant.h"
#include "ops/kquant_math.h"
#include "ops/quant_math.h"

namespace qat::ops::cpu {

namespace {

using scheme::Format;
namespace m = qat::ops::math;

// ---- element loads and stores the vectorizer can see through ----------------------------------
// A bf16 is the top half of a float. c10::BFloat16's own conversion from float branches on NaN,
// which keeps a loop scalar; store() computes the same bits (round to nearest even, NaN -> 0x7fc0)
// without a branch. float and half go through their usual conversions.
template <typename T>
inline float load(const T* p, int64_t i) {
  return static_cast<float>(p[i]);
}
template <>
inline float load(const c10::BFloat16* p, int64_t i) {
  return m::bf16_bits_to_float(p[i].x);
}
template <typename T>
inline void store(T* p, int64_t i, float v) {
  p[i] = static_cast<T>(v);
}
template <>
inline void store(c10::BFloat16* p, int64_t i, float v) {
  const uint32_t u = m::float_bits(v);
  const auto rounded = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  p[i].x = m::is_nan(v) ? uint16_t{0x7fc0} : rounded;
}

// Calls fn(begin, end, qparams) for runs of consecutive elements that share one group, in
// parallel: whole groups when groups are contiguous runs (per-group/-token/-tensor), else runs of
// `inner` elements of a strided (per-axis) group. No division per element. The qparams are passed
// by value: a reference could alias the output (float* out) and stop the compiler from keeping
// them in registers.
template <typename Fn>
void for_each_group_run(const GroupLayout& l, Fn&& fn, const std::vector<m::GroupQParams>& gq) {
  const int64_t inner = std::max<int64_t>(l.inner, 1);
  const int64_t runs = l.numel / inner;  // run r covers [r*inner, (r+1)*inner), group r % count
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / inner);
  at::parallel_for(0, runs, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      fn(r * inner, (r + 1) * inner, m::GroupQParams(gq[r % l.count]));
  });
}

std::vector<m::GroupQParams> group_qparams(const QuantSpec& spec, const at::Tensor& scale,
                                           const at::Tensor& zero) {
  const int64_t n = scale.numel();
  const float* s = scale.data_ptr<float>();
  const float* z = zero.data_ptr<float>();
  std::vector<m::GroupQParams> g(n);
  for (int64_t i = 0; i < n; ++i) g[i] = m::make_group_qparams(spec.format, spec.bits, s[i], z[i]);
  return g;
}

// An int32 whose order is less_total's order of floats (-0 below +0): flipping the magnitude bits
// of negative floats makes two's complement order match. The map is its own inverse.
inline int32_t order_key(uint32_t bits) {
  const auto i = static_cast<int32_t>(bits);
  return i ^ ((i >> 31) & 0x7fffffff);
}
inline float from_order_key(int32_t k) {
  return m::bits_float(static_cast<uint32_t>(order_key(static_cast<uint32_t>(k))));
}

// The statistics of one contiguous group, equal to folding m::stats_add over it in order, written
// in integer operations so that the loop vectorizes (GCC does not vectorize a float max written as
// a select, nor a select between a reduction and a constant):
// - min and max compare order keys; a NaN element is replaced by the neutral +inf / -inf key;
// - max |x| compares the bits of |x|, which order like the values, and counts a NaN as 0;
// - the signed max, the first element of largest |x|, is a second pass: the least position whose
//   |x| equals the max, again a vectorizable min.
template <typename T>
m::GroupStats contiguous_group_stats(const T* in, int64_t n) {
  const int32_t kPosInf = order_key(0x7f800000u), kNegInf = order_key(0xff800000u);
  int32_t kmin = kPosInf, kmax = kNegInf;
  uint32_t amax = 0;
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t u = m::float_bits(load(in, j));
    const uint32_t a = u & 0x7fffffffu;
    const int32_t nan = -static_cast<int32_t>(a > 0x7f800000u);  // all ones for NaN
    const int32_t k = order_key(u);
    kmin = std::min(kmin, (k & ~nan) | (kPosInf & nan));
    kmax = std::max(kmax, (k & ~nan) | (kNegInf & nan));
    amax = std::max(amax, a & ~static_cast<uint32_t>(nan));
  }
  m::GroupStats s{from_order_key(kmin), from_order_key(kmax), m::bits_float(amax), 0.0f};
  if (amax != 0) {  // else every element is +-0 or NaN, and the signed max stays +0 (stats_init)
    // int32 positions vectorize twice as wide (and SSE2 has no 64-bit compare); a group this
    // large is one chunk after another.
    constexpr int64_t kChunk = int64_t{1} << 30;
    for (int64_t c = 0; c < n; c += kChunk) {
      const auto len = static_cast<int32_t>(std::min(kChunk, n - c));
      int32_t first = len;
      for (int32_t j = 0; j < len; ++j) {
        const int32_t at = (m::float_bits(load(in, c + j)) & 0x7fffffffu) == amax ? j : len;
        first = std::min(first, at);
      }
      if (first < len) {
        s.signed_amax = load(in, c + first);
        break;
      }
    }
  }
  return s;
}

}  // namespace

void group_stats(const at::Tensor& x, const GroupLayout& l, at::Tensor& stats) {
  float* out = stats.data_ptr<float>();
  auto write = [out](int64_t g, const m::GroupStats& s) {
    out[4 * g + 0] = s.min;
    out[4 * g + 1] = s.max;
    out[4 * g + 2] = s.amax;
    out[4 * g + 3] = s.signed_amax;
  };
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_stats", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    if (l.contiguous()) {
      const int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(l.inner, 1));
      at::parallel_for(0, l.count, grain, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; ++g)
          write(g, contiguous_group_stats(in + g * l.inner, l.inner));
      });
    } else {  // strided groups (per-axis): one sequential pass in element order
      std::vector<m::GroupStats> acc(l.count, m::stats_init());
      for (int64_t i = 0; i < l.numel; ++i) m::stats_add(acc[(i / l.inner) % l.count], load(in, i));
      for (int64_t g = 0; g < l.count; ++g) write(g, acc[g]);
    }
  });
}

void scales_from_stats(const at::Tensor& stats, const QuantSpec& spec, at::Tensor& scale,
                       at::Tensor& zero) {
  const float* st = stats.data_ptr<float>();
  float* s = scale.data_ptr<float>();
  float* z = zero.data_ptr<float>();
  for (int64_t g = 0; g < scale.numel(); ++g) {
    const m::GroupStats gs{st[4 * g], st[4 * g + 1], st[4 * g + 2], st[4 * g + 3]};
    const m::ScaleZero sz = m::group_scale(spec.format, spec.bits, spec.scale_dtype, gs);
    s[g] = sz.scale;
    z[g] = sz.zero;
  }
}

void scales_from_range(const at::Tensor& lo, const at::Tensor& hi, const QuantSpec& spec,
                       at::Tensor& scale, at::Tensor& zero) {
  const float* l = lo.data_ptr<float>();
  const float* h = hi.data_ptr<float>();
  float* s = scale.data_ptr<float>();
  float* z = zero.data_ptr<float>();
  for (int64_t g = 0; g < scale.numel(); ++g) {
    const m::ScaleZero sz = m::range_to_scale(spec.format, spec.bits, spec.scale_dtype, l[g], h[g]);
    s[g] = sz.scale;
    z[g] = sz.zero;
  }
}

void fake_quantize(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
                   const at::Tensor& scale, const at::Tensor& zero, at::Tensor& y,
                   at::Tensor* mask) {
  const std::vector<m::GroupQParams> gq = group_qparams(spec, scale, zero);
  bool* mk = mask ? mask->data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "fake_quantize_cpu", [&] {
        const scalar_t* in = x.data_ptr<scalar_t>();
        scalar_t* out = y.data_ptr<scalar_t>();
        dispatch_format(spec.format, [&](auto tag) {
          constexpr Format F = decltype(tag)::value;
          for_each_group_run(
              l,
              [&](int64_t begin, int64_t end, m::GroupQParams g) {
                if (mk) {  // one loop for both outputs: x is read once
                  for (int64_t i = begin; i < end; ++i) {
                    const float v = load(in, i);
                    store(out, i, m::fake_quant_value<F>(v, g));
                    mk[i] = m::in_range<F>(v, g);
                  }
                } else {
                  for (int64_t i = begin; i < end; ++i)
                    store(out, i, m::fake_quant_value<F>(load(in, i), g));
                }
              },
              gq);
        });
      });
}

void quantize(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
              const at::Tensor& scale, const at::Tensor& zero, at::Tensor& codes) {
  const std::vector<m::GroupQParams> gq = group_qparams(spec, scale, zero);
  uint8_t* out = codes.data_ptr<uint8_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "quantize_cpu", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    dispatch_format(spec.format, [&](auto tag) {
      constexpr Format F = decltype(tag)::value;
      for_each_group_run(
          l,
          [&](int64_t begin, int64_t end, m::GroupQParams g) {
            for (int64_t i = begin; i < end; ++i) {
              const int q = m::quantize_value<F>(load(in, i), g);
              out[i] = static_cast<uint8_t>(q);  // two's complement bits for negative codes
            }
          },
          gq);
    });
  });
}

void dequantize(const at::Tensor& codes, const QuantSpec& spec, const GroupLayout& l,
                const at::Tensor& scale, const at::Tensor& zero, at::Tensor& y) {
  const std::vector<m::GroupQParams> gq = group_qparams(spec, scale, zero);
  const uint8_t* in = codes.data_ptr<uint8_t>();
  const bool is_signed = spec.format == Format::kInt || spec.format == Format::kQ8_0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "dequantize_cpu", [&] {
    scalar_t* out = y.data_ptr<scalar_t>();
    dispatch_format(spec.format, [&](auto tag) {
      constexpr Format F = decltype(tag)::value;
      for_each_group_run(
          l,
          [&](int64_t begin, int64_t end, m::GroupQParams g) {
            for (int64_t i = begin; i < end; ++i) {
              const int q = is_signed ? static_cast<int>(static_cast<int8_t>(in[i]))
                                      : static_cast<int>(in[i]);
              store(out, i, m::dequantize_value<F>(q, g));
            }
          },
          gq);
    });
  });
}

}  // namespace qat::ops::cpu

namespace qat::ops {

namespace {

namespace m = qat::ops::math;

// fake_quantize's element for format F, stored to T exactly as its loop stores it.
template <scheme::Format F, typename T>
float element_fake_quant(float x, const m::GroupQParams& g) {
  T out;
  cpu::store(&out, 0, m::fake_quant_value<F>(x, g));
  return static_cast<float>(out);
}

// The k-quant element against a stored sub-block scale (deq_scale) and min (deq_zero).
template <int kNmax, typename T>
float element_affine_k(float x, const m::GroupQParams& g) {
  T out;
  cpu::store(&out, 0, kquant::fake_quant_affine_k_value<kNmax>(x, g.deq_scale, g.deq_zero));
  return static_cast<float>(out);
}
template <typename T>
float element_q6k(float x, const m::GroupQParams& g) {
  T out;
  cpu::store(&out, 0, kquant::fake_quant_q6k_value(x, g.deq_scale));
  return static_cast<float>(out);
}

template <typename T>
float round_to(float x) {
  T out;
  cpu::store(&out, 0, x);
  return static_cast<float>(out);
}

}  // namespace

ElementFakeQuant::ElementFakeQuant(const QuantSpec& spec, const QParams& qp, at::ScalarType dtype) {
  TORCH_CHECK(!scheme::is_kquant(spec.format), "ElementFakeQuant: ", spec.to_string(),
              " has no per-group parameters (k-quants quantize whole super-blocks)");
  TORCH_CHECK(qp.scale.defined(), "ElementFakeQuant: qparams.scale is undefined");
  const at::Tensor scale = qp.scale.detach().to(at::kCPU, at::kFloat).contiguous().view({-1});
  const at::Tensor zero = qp.zero.defined()
                              ? qp.zero.detach().to(at::kCPU, at::kFloat).contiguous().view({-1})
                              : scale.new_zeros(scale.sizes());
  TORCH_CHECK(zero.numel() == scale.numel(), "ElementFakeQuant: ", scale.numel(), " scales but ",
              zero.numel(), " zero points");
  params_ = cpu::group_qparams(spec, scale, zero);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "ElementFakeQuant", [&] {
    TORCH_CHECK(dtype != at::kDouble,
                "ElementFakeQuant: values must be float32, float16 or bfloat16");
    to_dtype_ = &round_to<scalar_t>;
    dispatch_format(spec.format, [&](auto tag) {
      fake_quant_ = &element_fake_quant<decltype(tag)::value, scalar_t>;
    });
  });
}

ElementFakeQuant ElementFakeQuant::kquant(scheme::Format f, const at::Tensor& sub_scale,
                                          const at::Tensor& sub_min, at::ScalarType dtype) {
  TORCH_CHECK(scheme::is_kquant(f), "ElementFakeQuant::kquant: '", scheme::traits(f).name,
              "' is not a k-quant");
  const bool affine = f != scheme::Format::kQ6_K;
  TORCH_CHECK(sub_scale.defined() && sub_min.defined() == affine,
              "ElementFakeQuant::kquant: ", scheme::traits(f).name,
              affine ? " needs sub-block scales and mins" : " takes sub-block scales only");
  const at::Tensor dj = sub_scale.detach().to(at::kCPU, at::kFloat).contiguous().view({-1});
  const at::Tensor dm = affine ? sub_min.detach().to(at::kCPU, at::kFloat).contiguous().view({-1})
                               : dj.new_zeros(dj.sizes());
  TORCH_CHECK(dm.numel() == dj.numel(), "ElementFakeQuant::kquant: ", dj.numel(),
              " sub-block scales but ", dm.numel(), " mins");
  ElementFakeQuant e;
  e.params_.resize(static_cast<size_t>(dj.numel()));
  const float *pj = dj.data_ptr<float>(), *pm = dm.data_ptr<float>();
  for (int64_t i = 0; i < dj.numel(); ++i) {
    e.params_[static_cast<size_t>(i)].deq_scale = pj[i];
    e.params_[static_cast<size_t>(i)].deq_zero = pm[i];
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "ElementFakeQuant::kquant", [&] {
    TORCH_CHECK(dtype != at::kDouble,
                "ElementFakeQuant: values must be float32, float16 or bfloat16");
    e.to_dtype_ = &round_to<scalar_t>;
    e.fake_quant_ = f == scheme::Format::kQ4_K   ? &element_affine_k<15, scalar_t>
                    : f == scheme::Format::kQ5_K ? &element_affine_k<31, scalar_t>
                                                 : &element_q6k<scalar_t>;
  });
  return e;
}

}  // namespace qat::ops
