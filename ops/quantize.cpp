#include "ops/quantize.h"

#include <ATen/ATen.h>

#include "ops/cpu/quantize_cpu.h"
#include "ops/input_checks.h"
#include "ops/kquant.h"
#if defined(QAT_WITH_CUDA)
#include "ops/cuda/quantize_cuda_glue.h"
#endif

namespace qat::ops {

namespace {

using scheme::Format;
using scheme::GroupLayout;

// k-quants have no qparams: only fake_quantize_dynamic (and ops/kquant.h) take them.
void reject_kquant(const QuantSpec& spec, const char* what) {
  TORCH_CHECK(
      !scheme::is_kquant(spec.format), what, ": format '", spec.traits().name,
      "' chooses its scales per 256-element super-block while it quantizes, so it has no ",
      "qparams; use fake_quantize_dynamic, or quantize_kquant/dequantize_kquant (ops/kquant.h)");
}

// The qparams as the kernels want them: contiguous float32 on x's device with `count` elements.
std::pair<at::Tensor, at::Tensor> prepared_qparams(const QParams& qp, const GroupLayout& l,
                                                   const at::Tensor& x, const char* what) {
  TORCH_CHECK(qp.scale.defined(), what, ": qparams.scale is undefined");
  TORCH_CHECK(qp.scale.numel() == l.count, what, ": expected ", l.count,
              " scales for this tensor and spec, got ", qp.scale.numel());
  TORCH_CHECK(qp.scale.device() == x.device(), what, ": scale is on ", qp.scale.device(),
              " but the tensor is on ", x.device());
  at::Tensor scale = qp.scale.to(at::kFloat).contiguous().view({l.count});
  at::Tensor zero = qp.zero.defined() ? qp.zero.to(at::kFloat).contiguous().view({l.count})
                                      : at::zeros({l.count}, scale.options());
  TORCH_CHECK(zero.numel() == l.count, what, ": expected ", l.count, " zero points, got ",
              zero.numel());
  return {scale, zero};
}

QParams shaped(at::Tensor scale, at::Tensor zero, const QuantSpec& spec, at::IntArrayRef shape) {
  const auto s = spec.scale_shape(shape);
  return {scale.view(s), zero.view(s)};
}

}  // namespace

at::Tensor group_stats(const at::Tensor& x_in, const QuantSpec& spec) {
  check_float_input(x_in, "group_stats");
  reject_kquant(spec, "group_stats");
  spec.validate_for(x_in.sizes());
  const at::Tensor x = x_in.contiguous();
  const GroupLayout l = spec.layout(x.sizes());
  at::Tensor stats = at::empty({l.count, 4}, x.options().dtype(at::kFloat));
  if (x.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::group_stats(x, l, stats);
    return stats;
#endif
  }
  TORCH_CHECK(x.is_cpu(), "group_stats: unsupported device ", x.device());
  cpu::group_stats(x, l, stats);
  return stats;
}

QParams choose_qparams(const at::Tensor& x, const QuantSpec& spec) {
  const at::Tensor stats = group_stats(x, spec);
  const int64_t count = stats.size(0);
  at::Tensor scale = at::empty({count}, stats.options());
  at::Tensor zero = at::empty({count}, stats.options());
  if (stats.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::scales_from_stats(stats, spec, scale, zero);
    return shaped(scale, zero, spec, x.sizes());
#endif
  }
  cpu::scales_from_stats(stats, spec, scale, zero);
  return shaped(scale, zero, spec, x.sizes());
}

QParams qparams_from_range(const at::Tensor& lo_in, const at::Tensor& hi_in, const QuantSpec& spec,
                           at::IntArrayRef shape) {
  spec.validate_for(shape);
  reject_kquant(spec, "qparams_from_range");
  TORCH_CHECK(spec.traits().fixed_block == 0, "qparams_from_range: format '", spec.traits().name,
              "' takes each block's range from the block itself; use choose_qparams");
  const GroupLayout l = spec.layout(shape);
  TORCH_CHECK(lo_in.numel() == l.count && hi_in.numel() == l.count, "qparams_from_range: expected ",
              l.count, " ranges for shape ", shape, ", got lo ", lo_in.numel(), " and hi ",
              hi_in.numel());
  // Tiny tensors ([count]); the per-group arithmetic is the same function the kernels use.
  const at::Tensor lo = lo_in.detach().to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor hi = hi_in.detach().to(at::kCPU, at::kFloat).contiguous();
  at::Tensor scale = at::empty({l.count}, lo.options());
  at::Tensor zero = at::empty({l.count}, lo.options());
  cpu::scales_from_range(lo, hi, spec, scale, zero);
  return shaped(scale.to(lo_in.device()), zero.to(lo_in.device()), spec, shape);
}

FakeQuantResult fake_quantize(const at::Tensor& x_in, const QuantSpec& spec, const QParams& qp,
                              bool want_mask) {
  check_float_input(x_in, "fake_quantize");
  reject_kquant(spec, "fake_quantize");
  spec.validate_for(x_in.sizes());
  const at::Tensor x = x_in.contiguous();
  const GroupLayout l = spec.layout(x.sizes());
  auto [scale, zero] = prepared_qparams(qp, l, x, "fake_quantize");
  FakeQuantResult r;
  r.y = at::empty_like(x);
  if (want_mask) r.mask = at::empty(x.sizes(), x.options().dtype(at::kBool));
  if (x.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::fake_quantize(x, spec, l, scale, zero, r.y, want_mask ? &r.mask : nullptr);
    return r;
#endif
  }
  TORCH_CHECK(x.is_cpu(), "fake_quantize: unsupported device ", x.device());
  cpu::fake_quantize(x, spec, l, scale, zero, r.y, want_mask ? &r.mask : nullptr);
  return r;
}

DynamicFakeQuantResult fake_quantize_dynamic(const at::Tensor& x_in, const QuantSpec& spec,
                                             bool want_mask) {
  check_float_input(x_in, "fake_quantize_dynamic");
  spec.validate_for(x_in.sizes());
  if (scheme::is_kquant(spec.format)) {  // no qparams to return; every element is "in range"
    DynamicFakeQuantResult r;
    r.y = fake_quantize_kquant(x_in, spec);
    if (want_mask) r.mask = at::ones(x_in.sizes(), x_in.options().dtype(at::kBool));
    return r;
  }
  const at::Tensor x = x_in.contiguous();
  const GroupLayout l = spec.layout(x.sizes());
#if defined(QAT_WITH_CUDA)
  if (x.is_cuda() && cuda_glue::fused_dynamic_supported(x, l)) {
    DynamicFakeQuantResult r;
    r.y = at::empty_like(x);
    if (want_mask) r.mask = at::empty(x.sizes(), x.options().dtype(at::kBool));
    at::Tensor scale = at::empty({l.count}, x.options().dtype(at::kFloat));
    at::Tensor zero = at::empty({l.count}, x.options().dtype(at::kFloat));
    cuda_glue::fake_quantize_dynamic(x, spec, l, r.y, want_mask ? &r.mask : nullptr, scale, zero);
    r.qparams = shaped(scale, zero, spec, x.sizes());
    return r;
  }
#endif
  DynamicFakeQuantResult r;
  r.qparams = choose_qparams(x, spec);
  FakeQuantResult f = fake_quantize(x, spec, r.qparams, want_mask);
  r.y = std::move(f.y);
  r.mask = std::move(f.mask);
  return r;
}

at::Tensor quantize(const at::Tensor& x_in, const QuantSpec& spec, const QParams& qp) {
  check_float_input(x_in, "quantize");
  reject_kquant(spec, "quantize");
  spec.validate_for(x_in.sizes());
  const at::Tensor x = x_in.contiguous();
  TORCH_CHECK(at::isfinite(x).all().item<bool>(),
              "quantize: the tensor holds NaN or Inf values; only finite values have codes");
  const GroupLayout l = spec.layout(x.sizes());
  auto [scale, zero] = prepared_qparams(qp, l, x, "quantize");
  at::Tensor codes = at::empty(x.sizes(), x.options().dtype(at::kByte));
  if (x.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::quantize(x, spec, l, scale, zero, codes);
    return codes;
#endif
  }
  TORCH_CHECK(x.is_cpu(), "quantize: unsupported device ", x.device());
  cpu::quantize(x, spec, l, scale, zero, codes);
  return codes;
}

at::Tensor dequantize(const at::Tensor& codes_in, const QuantSpec& spec, const QParams& qp,
                      at::ScalarType dtype) {
  TORCH_CHECK(codes_in.scalar_type() == at::kByte, "dequantize: expected uint8 codes, got ",
              codes_in.scalar_type());
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
              "dequantize: output dtype must be float32, float16 or bfloat16, got ", dtype);
  reject_kquant(spec, "dequantize");
  spec.validate_for(codes_in.sizes());
  const at::Tensor codes = codes_in.contiguous();
  const GroupLayout l = spec.layout(codes.sizes());
  auto [scale, zero] = prepared_qparams(qp, l, codes, "dequantize");
  at::Tensor y = at::empty(codes.sizes(), codes.options().dtype(dtype));
  if (codes.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::dequantize(codes, spec, l, scale, zero, y);
    return y;
#endif
  }
  TORCH_CHECK(codes.is_cpu(), "dequantize: unsupported device ", codes.device());
  cpu::dequantize(codes, spec, l, scale, zero, y);
  return y;
}

}  // namespace qat::ops
