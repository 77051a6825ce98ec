#include "qat/fake_quant/fake_quant.h"

#include <c10/util/accumulate.h>
#include <torch/autograd.h>

#include <cmath>
#include <tuple>
#include <utility>

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

// ggml's block formats with learned d (and m): see fake_quant_gguf_learned in the header.
struct GgufLearnedFunction : torch::autograd::Function<GgufLearnedFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& d,
                            const at::Tensor& m, const QuantSpec& spec, double grad_factor) {
    const bool affine = spec.has_zero_point();
    const QParams qp = gguf_stored_qparams(d.detach(), affine ? m.detach() : at::Tensor());
    at::Tensor y = ops::fake_quantize(x, spec, qp, /*want_mask=*/false).y;
    ctx->save_for_backward({x, y, qp.scale, qp.zero});
    ctx->saved_data["grad_factor"] = grad_factor;
    ctx->saved_data["affine"] = affine;
    const scheme::GroupLayout l = spec.layout(x.sizes());
    ctx->saved_data["inner"] = l.inner;
    ctx->saved_data["count"] = l.count;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &y = saved[1], &dh = saved[2], &mh = saved[3];
    const double gf = ctx->saved_data["grad_factor"].toDouble();
    const bool affine = ctx->saved_data["affine"].toBool();
    scheme::GroupLayout l;
    l.inner = ctx->saved_data["inner"].toInt();
    l.count = ctx->saved_data["count"].toInt();
    l.numel = x.numel();

    const at::Tensor de = expand_params(dh, l, x.sizes()), me = expand_params(mh, l, x.sizes());
    const at::Tensor nonzero = de.ne(0);
    const at::Tensor inv = at::where(nonzero, de.reciprocal(), at::zeros_like(de));  // ggml: 1/d
    const at::Tensor v = (x.to(at::kFloat) - me) * inv;
    // The signed level each element was rounded to, read back from the output (exact: |q| <= 127).
    const at::Tensor q = ((y.to(at::kFloat) - me) * inv).round();
    const at::Tensor inside = (v - q).abs() <= 0.5;
    const at::Tensor g = grads[0].to(at::kFloat);

    const at::Tensor gx = (g * inside).to(x.scalar_type());
    const at::Tensor dd = q - v * inside;
    const at::Tensor gd =
        group_view(g * dd, l).sum(at::IntArrayRef{0, 2}).mul(gf).view(dh.sizes()).to(dh.dtype());
    at::Tensor gm;
    if (affine) {
      gm = group_view(g * inside.logical_not(), l)
               .sum(at::IntArrayRef{0, 2})
               .mul(gf)
               .view(mh.sizes());
    }
    return {gx, gd, gm, at::Tensor(), at::Tensor()};
  }
};

// ---- learned k-quant scales --------------------------------------------------------------

at::Tensor stored_half(const at::Tensor& t) {
  return t.to(at::kFloat).to(at::kHalf).to(at::kFloat);
}

// The layout of a tensor [..., K] in super-blocks and sub-blocks, and the format's code ranges.
struct KQuantShape {
  int64_t rows, k, s, j, sub;  // rows of K; S super-blocks per row, J sub-blocks of `sub` each
  bool affine;                 // Q4_K, Q5_K: a min beside each scale
  int lo, hi;                  // sub-block scale codes
  int qlo, qhi;                // element levels
};

KQuantShape kquant_shape(at::IntArrayRef shape, const QuantSpec& spec) {
  KQuantShape sh{};
  sh.k = shape.back();
  sh.rows = c10::multiply_integers(shape) / sh.k;
  sh.s = sh.k / 256;
  sh.j = ops::kquant_sub_blocks(spec.format);
  sh.sub = 256 / sh.j;
  sh.affine = spec.format != scheme::Format::kQ6_K;
  sh.lo = sh.affine ? 0 : -128;
  sh.hi = sh.affine ? 63 : 127;
  sh.qlo = sh.affine ? 0 : -32;
  sh.qhi = spec.format == scheme::Format::kQ4_K ? 15 : 31;
  return sh;
}

// Codes of sub-block values t against their super-block's stored step h: u = t / h and
// clamp(round(u), lo, hi); both 0 where h = 0.
void sub_block_codes(const at::Tensor& t, const at::Tensor& h, int lo, int hi, at::Tensor* u,
                     at::Tensor* code) {
  const at::Tensor nz = h.ne(0), zero = at::zeros_like(t);
  *u = at::where(nz, t / h, zero);
  *code = at::where(nz, u->round().clamp(lo, hi), zero);
}

// Everything the forward computes (the backward recomputes it rather than keeping it).
struct KQuantForward {
  at::Tensor dh, u, sc, dj;    // [R, S*J]: stored d per sub-block, sub_scale / dh, codes, scales
  at::Tensor dmh, um, mn, mj;  // the same for the mins (affine formats)
  at::Tensor v, level, y;      // [R, K]: (x + mj) / dj, the element's level L, the output
  at::Tensor nonzero;          // [R, K]: dj != 0
};

// The stored fp16 d (dmin) of each sub-block's super-block, [R, S*J], and the sub-block codes
// against them: what the file holds for the learned parameters (f's dh, u, sc, dmh, um, mn).
void kquant_sub_block_codes(const KQuantLearned& p, const KQuantShape& sh, KQuantForward* f) {
  auto sub = [&](const at::Tensor& t) { return t.detach().to(at::kFloat).reshape({sh.rows, -1}); };
  auto per_sub = [&](const at::Tensor& t) {
    return stored_half(sub(t)).repeat_interleave(sh.j, 1);
  };
  f->dh = per_sub(p.d);
  sub_block_codes(sub(p.sub_scale), f->dh, sh.lo, sh.hi, &f->u, &f->sc);
  if (sh.affine) {
    f->dmh = per_sub(p.dmin);
    sub_block_codes(sub(p.sub_min), f->dmh, 0, 63, &f->um, &f->mn);
  }
}

KQuantForward kquant_forward(const at::Tensor& x, const KQuantLearned& p, const KQuantShape& sh) {
  KQuantForward f;
  kquant_sub_block_codes(p, sh, &f);
  f.dj = f.dh * f.sc;
  const at::Tensor xf = x.to(at::kFloat).reshape({sh.rows, sh.k});
  const at::Tensor dj = f.dj.repeat_interleave(sh.sub, 1);
  at::Tensor num = xf, mj;
  if (sh.affine) {
    f.mj = f.dmh * f.mn;
    mj = f.mj.repeat_interleave(sh.sub, 1);
    num = xf + mj;
  }
  f.nonzero = dj.ne(0);
  const at::Tensor zero = at::zeros_like(xf);
  f.v = at::where(f.nonzero, num / dj, zero);
  // (Level 0 as +0: round(-0.3) is -0, and ggml's integer level 0 makes dj * 0 a +0 for dj > 0.)
  const at::Tensor level = f.v.round().clamp(sh.qlo, sh.qhi);
  f.level = at::where(f.nonzero & level.ne(0), level, zero);
  f.y = sh.affine ? dj * f.level - mj : dj * f.level;  // ggml: (dj * L) + (-mj), two roundings
  return f;
}

struct KQuantLearnedFunction : torch::autograd::Function<KQuantLearnedFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& d,
                            const at::Tensor& dmin, const at::Tensor& sub_scale,
                            const at::Tensor& sub_min, const QuantSpec& spec) {
    const KQuantShape sh = kquant_shape(x.sizes(), spec);
    const KQuantForward f = kquant_forward(x, {d, dmin, sub_scale, sub_min}, sh);
    ctx->save_for_backward({x, d, dmin, sub_scale, sub_min});
    ctx->saved_data["format"] = static_cast<int64_t>(spec.format);
    return f.y.reshape(x.sizes()).to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    QuantSpec spec;
    spec.format = static_cast<scheme::Format>(ctx->saved_data["format"].toInt());
    spec.bits = spec.traits().max_bits;
    const KQuantShape sh = kquant_shape(x.sizes(), spec);
    const KQuantForward f = kquant_forward(x, {saved[1], saved[2], saved[3], saved[4]}, sh);
    const double gf_sub = 1.0 / std::sqrt(static_cast<double>(sh.sub * sh.qhi));
    const double gf_super = gf_sub / std::sqrt(static_cast<double>(sh.j * sh.hi));

    const at::Tensor g = grads[0].to(at::kFloat).reshape({sh.rows, sh.k});
    const at::Tensor inside = f.nonzero & (f.v - f.level).abs().le(0.5);
    const at::Tensor gx = (g * inside).reshape(x.sizes()).to(x.scalar_type());
    auto per_sub_sum = [&](const at::Tensor& t) {
      return t.view({sh.rows, sh.s * sh.j, sh.sub}).sum(2);
    };
    auto per_super_sum = [&](const at::Tensor& t) { return t.view({sh.rows, sh.s, sh.j}).sum(2); };
    // One level of LSQ: the sub-block values t coded against the step h.
    auto lsq = [&](const at::Tensor& big_g, const at::Tensor& h, const at::Tensor& u,
                   const at::Tensor& code, const at::Tensor& like_t, const at::Tensor& like_h) {
      const at::Tensor in = h.ne(0) & (u - code).abs().le(0.5);
      const at::Tensor gt = (big_g * in).mul(gf_sub).view(like_t.sizes());
      const at::Tensor gh =
          per_super_sum(big_g * (code - u * in)).mul(gf_super).view(like_h.sizes());
      return std::make_pair(gt, gh);
    };
    const at::Tensor g_dj = per_sub_sum(g * (f.level - f.v * inside));
    auto [g_sub_scale, g_d] = lsq(g_dj, f.dh, f.u, f.sc, saved[3], saved[1]);
    at::Tensor g_sub_min, g_dmin;
    if (sh.affine) {
      const at::Tensor g_mj = per_sub_sum(-(g * inside.logical_not()));
      std::tie(g_sub_min, g_dmin) = lsq(g_mj, f.dmh, f.um, f.mn, saved[4], saved[2]);
    }
    return {gx, g_d, g_dmin, g_sub_scale, g_sub_min, at::Tensor()};
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

bool learns_block_scales(scheme::Format f) {
  const scheme::Mapping m = scheme::traits(f).mapping;
  return m == scheme::Mapping::kGgufBlock || m == scheme::Mapping::kGgufSuper;
}

QParams gguf_stored_qparams(const at::Tensor& d, const at::Tensor& m) {
  auto stored = [](const at::Tensor& t) { return t.to(at::kFloat).to(at::kHalf).to(at::kFloat); };
  return {stored(d), m.defined() ? stored(m) : at::zeros_like(d, d.options().dtype(at::kFloat))};
}

at::Tensor fake_quant_gguf_learned(const at::Tensor& x, const at::Tensor& d, const at::Tensor& m,
                                   const QuantSpec& spec, double grad_factor) {
  TORCH_CHECK(spec.traits().mapping == scheme::Mapping::kGgufBlock,
              "fake_quant_gguf_learned is for ggml's block formats (gguf_q8_0, gguf_q4_0, ",
              "gguf_q4_1, gguf_q5_0, gguf_q5_1); got '", spec.traits().name, "'");
  TORCH_CHECK(spec.has_zero_point() == m.defined(), "format '", spec.traits().name, "' ",
              spec.has_zero_point() ? "learns a block min m beside d: pass it"
                                    : "has no block min: pass an undefined m");
  spec.validate_for(x.sizes());
  const int64_t count = spec.layout(x.sizes()).count;
  TORCH_CHECK(d.numel() == count && (!m.defined() || m.numel() == count),
              "fake_quant_gguf_learned: expected ", count, " block parameters, got d ", d.numel(),
              m.defined() ? " and m " + std::to_string(m.numel()) : std::string());
  const at::Tensor mm = m.defined() ? m : at::zeros_like(d, d.options().requires_grad(false));
  return GgufLearnedFunction::apply(x, d, mm, spec, grad_factor);
}

ops::KQuantParams kquant_stored_params(const KQuantLearned& p, const QuantSpec& spec) {
  TORCH_CHECK(scheme::is_kquant(spec.format), "kquant_stored_params: '", spec.traits().name,
              "' is not a k-quant");
  // The weight [..., K] that p.d [..., K / 256] describes.
  std::vector<int64_t> shape = p.d.sizes().vec();
  if (shape.empty()) shape.push_back(1);
  shape.back() *= 256;
  const KQuantShape sh = kquant_shape(shape, spec);
  KQuantForward f;
  kquant_sub_block_codes(p, sh, &f);
  ops::KQuantParams out;
  out.d = stored_half(p.d.detach());
  out.scales = f.sc.view(p.sub_scale.sizes());
  if (sh.affine) {
    out.dmin = stored_half(p.dmin.detach());
    out.mins = f.mn.view(p.sub_min.sizes());
  }
  return out;
}

KQuantLearned kquant_learned_init(const at::Tensor& x, const QuantSpec& spec) {
  torch::NoGradGuard no_grad;
  const ops::KQuantParams kp = ops::kquant_params(ops::quantize_kquant(x.detach(), spec), spec);
  const int64_t j = ops::kquant_sub_blocks(spec.format);
  KQuantLearned p;
  p.d = kp.d;
  p.sub_scale = kp.d.repeat_interleave(j, -1) * kp.scales;
  if (kp.dmin.defined()) {
    p.dmin = kp.dmin;
    p.sub_min = kp.dmin.repeat_interleave(j, -1) * kp.mins;
  }
  return p;
}

at::Tensor fake_quant_kquant_learned(const at::Tensor& x, const KQuantLearned& p,
                                     const QuantSpec& spec) {
  TORCH_CHECK(scheme::is_kquant(spec.format), "fake_quant_kquant_learned: '", spec.traits().name,
              "' is not a k-quant (gguf_q4_k, gguf_q5_k, gguf_q6_k)");
  spec.validate_for(x.sizes());
  const bool affine = spec.format != scheme::Format::kQ6_K;
  const int64_t supers = x.numel() / 256, subs = supers * ops::kquant_sub_blocks(spec.format);
  auto check = [&](const at::Tensor& t, int64_t n, const char* what, bool want) {
    TORCH_CHECK(t.defined() == want && (!want || t.numel() == n),
                "fake_quant_kquant_learned: ", spec.traits().name, " of shape ", x.sizes(),
                " takes ", want ? std::to_string(n) + " " : std::string("no "), what, ", got ",
                t.defined() ? std::to_string(t.numel()) : std::string("none"));
  };
  check(p.d, supers, "super-block d", true);
  check(p.dmin, supers, "super-block dmin", affine);
  check(p.sub_scale, subs, "sub-block scales", true);
  check(p.sub_min, subs, "sub-block mins", affine);
  auto or_dummy = [](const at::Tensor& t) { return t.defined() ? t : at::zeros({1}); };
  return KQuantLearnedFunction::apply(x, p.d, or_dummy(p.dmin), p.sub_scale, or_dummy(p.sub_min),
                                      spec);
}

double lsq_grad_factor(const QuantSpec& spec, at::IntArrayRef shape) {
  const scheme::GroupLayout l = spec.layout(shape);
  const double n = static_cast<double>(l.group_numel());
  return 1.0 / std::sqrt(n * static_cast<double>(spec.code_range().qmax));
}

}  // namespace qat::fake_quant
