#include "ops/cpu/quantize_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "ops/dispatch.h"
#include "ops/quant_math.h"

namespace qat::ops::cpu {

namespace {

using scheme::Format;
namespace m = qat::ops::math;

// Calls fn(begin, end, qparams) for runs of consecutive elements that share one group, in
// parallel: whole groups when groups are contiguous runs (per-group/-token/-tensor), else runs of
// `inner` elements of a strided (per-axis) group. No division per element.
template <typename Fn>
void for_each_group_run(const GroupLayout& l, Fn&& fn, const std::vector<m::GroupQParams>& gq) {
  const int64_t inner = std::max<int64_t>(l.inner, 1);
  const int64_t runs = l.numel / inner;  // run r covers [r*inner, (r+1)*inner), group r % count
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / inner);
  at::parallel_for(0, runs, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fn(r * inner, (r + 1) * inner, gq[r % l.count]);
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

}  // namespace

void group_stats(const at::Tensor& x, const GroupLayout& l, at::Tensor& stats) {
  float* out = stats.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_stats", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    if (l.contiguous()) {
      at::parallel_for(0, l.count, 64, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; ++g) {
          m::GroupStats s = m::stats_init();
          for (int64_t j = 0; j < l.inner; ++j) m::stats_add(s, static_cast<float>(in[g * l.inner + j]));
          out[4 * g + 0] = s.min;
          out[4 * g + 1] = s.max;
          out[4 * g + 2] = s.amax;
          out[4 * g + 3] = s.signed_amax;
        }
      });
    } else {  // strided groups (per-axis): one sequential pass in element order
      std::vector<m::GroupStats> acc(l.count, m::stats_init());
      for (int64_t i = 0; i < l.numel; ++i) m::stats_add(acc[(i / l.inner) % l.count], static_cast<float>(in[i]));
      for (int64_t g = 0; g < l.count; ++g) {
        out[4 * g + 0] = acc[g].min;
        out[4 * g + 1] = acc[g].max;
        out[4 * g + 2] = acc[g].amax;
        out[4 * g + 3] = acc[g].signed_amax;
      }
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
                   const at::Tensor& scale, const at::Tensor& zero, at::Tensor& y, at::Tensor* mask) {
  const std::vector<m::GroupQParams> gq = group_qparams(spec, scale, zero);
  bool* mk = mask ? mask->data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fake_quantize_cpu", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* out = y.data_ptr<scalar_t>();
    dispatch_format(spec.format, [&](auto tag) {
      constexpr Format F = decltype(tag)::value;
      for_each_group_run(l, [&](int64_t begin, int64_t end, const m::GroupQParams& g) {
        for (int64_t i = begin; i < end; ++i) {
          const float v = static_cast<float>(in[i]);
          out[i] = static_cast<scalar_t>(m::fake_quant_value<F>(v, g));
        }
        if (mk) {
          for (int64_t i = begin; i < end; ++i) mk[i] = m::in_range<F>(static_cast<float>(in[i]), g);
        }
      }, gq);
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
      for_each_group_run(l, [&](int64_t begin, int64_t end, const m::GroupQParams& g) {
        for (int64_t i = begin; i < end; ++i) {
          const int q = m::quantize_value<F>(static_cast<float>(in[i]), g);
          out[i] = static_cast<uint8_t>(q);  // two's complement bits for negative codes
        }
      }, gq);
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
      for_each_group_run(l, [&](int64_t begin, int64_t end, const m::GroupQParams& g) {
        for (int64_t i = begin; i < end; ++i) {
          const int q = is_signed ? static_cast<int>(static_cast<int8_t>(in[i])) : static_cast<int>(in[i]);
          out[i] = static_cast<scalar_t>(m::dequantize_value<F>(q, g));
        }
      }, gq);
    });
  });
}

}  // namespace qat::ops::cpu
