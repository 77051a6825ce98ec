#include "qat/fake_quant/fake_quant.h"

#include <torch/autograd.h>

#include <cmath>

namespace qat::fake_quant {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Reshape a per-element tensor to [outer, count, inner] so a group reduction is a sum over dims
// 0 and 2 (covers every granularity: per-group/per-token/per-tensor have outer == 1).
at::Tensor group_view(const at::Tensor& t, const scheme::GroupLayout& l) {
  return t.reshape({l.numel / (l.count * l.inner), l.count, l.inner});
}
at::Tensor expand_params(const at::Tensor& p, const scheme::GroupLayout& l, at::IntArrayRef shape) {
  return p.reshape({1, l.count, 1})
      .expand({l.numel / (l.count * l.inner), l.count, l.inner})
      .reshape(shape);
}

struct FakeQuantFunction : torch::autograd::Function<FakeQuantFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const QuantSpec& spec,
                            const QParams& qp, bool dynamic, GradMode mode, QParams* qparams_out) {
    const bool want_mask = mode == GradMode::kClippedSte;
    at::Tensor y, mask;
    if (dynamic) {
      ops::DynamicFakeQuantResult r = ops::fake_quantize_dynamic(x, spec, want_mask);
      y = r.y;
      mask = r.mask;
      if (qparams_out) *qparams_out = r.qparams;
    } else {
      ops::FakeQuantResult r = ops::fake_quantize(x, spec, qp, want_mask);
      y = r.y;
      mask = r.mask;
    }
    if (want_mask) ctx->save_for_backward({mask});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& g = grads[0];
    const auto saved = ctx->get_saved_variables();
    at::Tensor gx = saved.empty() ? g : g * saved[0];
    return {gx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct LsqFunction : torch::autograd::Function<LsqFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, const QuantSpec& spec,
                            double grad_factor) {
    const scheme::CodeRange r = spec.code_range();
    const at::Tensor s = scale.detach().to(at::kFloat);
    TORCH_CHECK((s > 0).all().item<bool>(), "fake_quant_lsq: every scale must be > 0");
    // The rounded zero point is what the deployed format stores (an integer code).
    // (A symmetric format passes zeros: autograd functions cannot take undefined tensors.)
    const bool has_zero = spec.format == scheme::Format::kUInt;
    const at::Tensor z = zero_point.detach().to(at::kFloat).clamp(r.qmin, r.qmax).round();
    ops::FakeQuantResult out = ops::fake_quantize(x, spec, QParams{s, z}, /*want_mask=*/false);
    ctx->save_for_backward({x, s, z});
    ctx->saved_data["grad_factor"] = grad_factor;
    ctx->saved_data["has_zero"] = has_zero;
    ctx->saved_data["qmin"] = static_cast<int64_t>(r.qmin);
    ctx->saved_data["qmax"] = static_cast<int64_t>(r.qmax);
    const scheme::GroupLayout l = spec.layout(x.sizes());
    ctx->saved_data["inner"] = l.inner;
    ctx->saved_data["count"] = l.count;
    return out.y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &s = saved[1], &z = saved[2];
    const double gf = ctx->saved_data["grad_factor"].toDouble();
    const bool has_zero = ctx->saved_data["has_zero"].toBool();
    const double qmin = static_cast<double>(ctx->saved_data["qmin"].toInt());
    const double qmax = static_cast<double>(ctx->saved_data["qmax"].toInt());
    scheme::GroupLayout l;
    l.inner = ctx->saved_data["inner"].toInt();
    l.count = ctx->saved_data["count"].toInt();
    l.numel = x.numel();

    const at::Tensor xf = x.to(at::kFloat);
    const at::Tensor se = expand_params(s, l, x.sizes());
    const at::Tensor ze = expand_params(z, l, x.sizes());
    const at::Tensor v = xf * se.reciprocal();  // x * (1/s), as the forward
    const at::Tensor rv = v.round();            // half to even
    const at::Tensor c = rv + ze;
    const at::Tensor below = c<qmin, above = c> qmax;
    const at::Tensor inside = below.logical_or(above).logical_not();
    const at::Tensor g = grads[0].to(at::kFloat);

    const at::Tensor gx = (g * inside).to(x.scalar_type());
    // dy/ds per element, then summed per group.
    at::Tensor ds = at::where(inside, rv - v, at::where(below, qmin - ze, qmax - ze));
    at::Tensor gs = group_view(g * ds, l).sum(at::IntArrayRef{0, 2}).mul(gf).view(s.sizes());
    at::Tensor gz;
    if (has_zero) {
      const at::Tensor dz = at::where(inside, at::zeros_like(se), -se);
      gz = group_view(g * dz, l).sum(at::IntArrayRef{0, 2}).mul(gf).view(z.sizes());
    }
    return {gx, gs, gz, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor fake_quant(const at::Tensor& x, const QuantSpec& spec, const QParams& qp,
                      GradMode mode) {
  return FakeQuantFunction::apply(x, spec, qp, false, mode, nullptr);
}

at::Tensor fake_quant_dynamic(const at::Tensor& x, const QuantSpec& spec, GradMode mode,
                              QParams* qparams_out) {
  return FakeQuantFunction::apply(x, spec, QParams{}, true, mode, qparams_out);
}

at::Tensor fake_quant_lsq(const at::Tensor& x, const at::Tensor& scale,
                          const at::Tensor& zero_point, const QuantSpec& spec, double grad_factor) {
  TORCH_CHECK(spec.traits().learnable_ok, "LSQ needs an integer grid (int or uint); got format '",
              spec.traits().name, "'");
  TORCH_CHECK(spec.format != scheme::Format::kUInt || zero_point.defined(),
              "LSQ+ on an asymmetric (uint) format needs a zero_point tensor");
  TORCH_CHECK(spec.format != scheme::Format::kInt || !zero_point.defined(),
              "a symmetric (int) format has no zero point; pass an undefined zero_point");
  TORCH_CHECK(spec.scale_dtype == scheme::ScaleDtype::kFloat32,
              "LSQ learns float32 scales; set scale_dtype float32 (got ",
              scheme::to_string(spec.scale_dtype), ")");
  spec.validate_for(x.sizes());
  const int64_t count = spec.layout(x.sizes()).count;
  TORCH_CHECK(scale.numel() == count, "fake_quant_lsq: expected ", count, " scales, got ",
              scale.numel());
  TORCH_CHECK(!zero_point.defined() || zero_point.numel() == count, "fake_quant_lsq: expected ",
              count, " zero points, got ", zero_point.numel());
  const at::Tensor zp = zero_point.defined()
                            ? zero_point
                            : at::zeros_like(scale, scale.options().requires_grad(false));
  return LsqFunction::apply(x, scale, zp, spec, grad_factor);
}

double lsq_grad_factor(const QuantSpec& spec, at::IntArrayRef shape) {
  const scheme::GroupLayout l = spec.layout(shape);
  const double n = static_cast<double>(l.group_numel());
  return 1.0 / std::sqrt(n * static_cast<double>(spec.code_range().qmax));
}

}  // namespace qat::fake_quant
