// Gradients of the fake-quant functions: STE, clipped STE, LSQ/LSQ+ against float64 finite
// differences of the straight-through surrogate, and LSQ against ATen's learnable fake quant.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <catch2/catch.hpp>
#include <cmath>

#include "ops/kquant.h"
#include "qat/fake_quant/fake_quant.h"
#include "qat/fake_quant/fake_quantizer.h"
#include "tests/support/helpers.h"

using qat::fake_quant::GradMode;
using qat::scheme::Granularity;
using qat::scheme::QuantSpec;

TEST_CASE("STE passes the gradient through, clipped STE zeroes it outside the range",
          "[fake_quant][grad]") {
  const QuantSpec spec = QuantSpec::from_name("int4").with(Granularity::per_axis(0));
  at::Tensor x = qat::test::randn({4, 64}, 1).requires_grad_(true);
  // A static scale small enough that some elements clip.
  const qat::ops::QParams qp{at::full({4}, 0.1f), at::zeros({4})};
  const at::Tensor g = qat::test::randn({4, 64}, 2);

  SECTION("STE") {
    qat::fake_quant::fake_quant(x, spec, qp, GradMode::kSte).backward(g);
    REQUIRE(at::equal(x.grad(), g));
  }
  SECTION("clipped STE") {
    qat::fake_quant::fake_quant(x, spec, qp, GradMode::kClippedSte).backward(g);
    // Independent rule: |round(x/0.1)| within [-8, 7]
    const at::Tensor c = (x.detach() * (1.0f / 0.1f)).round();
    const at::Tensor inside = (c >= -8) & (c <= 7);
    REQUIRE(inside.logical_not().any().item<bool>());  // the case really clips
    REQUIRE(at::equal(x.grad(), g * inside));
  }
  SECTION("dynamic min-max never clips, so both STEs agree") {
    qat::fake_quant::fake_quant_dynamic(x, spec, GradMode::kClippedSte).backward(g);
    REQUIRE(at::equal(x.grad(), g));
  }
}

namespace {

// float64 straight-through surrogate of LSQ/LSQ+: the rounding residual r = round(v0) - v0 and
// the region (inside / below / above) are frozen at the evaluation point, so the surrogate is
// smooth and its finite differences are the STE gradients.
struct Surrogate {
  at::Tensor x0, r, region;  // region: 0 inside, -1 below, +1 above
  at::Tensor zc;             // rounded zero point per element (float64)
  double qmin, qmax;
  at::Tensor eval(const at::Tensor& x, const at::Tensor& s, const at::Tensor& z) const {
    // y inside = (v + r) * s = x + r s; below = (qmin - z) s; above = (qmax - z) s
    const at::Tensor inside = x + r * s;
    const at::Tensor below = (qmin - z) * s, above = (qmax - z) * s;
    return at::where(region == 0, inside, at::where(region < 0, below, above));
  }
};

}  // namespace

TEST_CASE("LSQ and LSQ+ gradients match float64 finite differences", "[fake_quant][lsq][grad]") {
  for (const std::string f : {"int4", "int8", "uint4", "int3"}) {
    const bool asym = f[0] == 'u';
    const QuantSpec spec = QuantSpec::from_name(f).with(Granularity::per_axis(0));
    const auto range = spec.code_range();
    CAPTURE(f);
    const at::Tensor x = qat::test::randn({3, 40}, 4);
    // Scales that clip some values on purpose.
    at::Tensor s = (x.abs().amax(1) * 0.7 / range.qmax).requires_grad_(true);
    at::Tensor z = asym ? at::full({3}, 6.3f).requires_grad_(true) : at::Tensor();
    at::Tensor xg = x.clone().requires_grad_(true);
    const at::Tensor g = qat::test::randn({3, 40}, 5);
    const double gf = 0.37;
    qat::fake_quant::fake_quant_lsq(xg, s, z, spec, gf).backward(g);

    // Frozen surrogate at the evaluation point, in float64.
    const at::Tensor xd = x.to(at::kDouble), sd = s.detach().to(at::kDouble).view({3, 1});
    const at::Tensor zd =
        asym ? z.detach().to(at::kDouble).clamp(range.qmin, range.qmax).round().view({3, 1})
             : at::zeros({3, 1}, at::kDouble);
    const at::Tensor v = xd * (1.0 / sd);
    const at::Tensor c = v.round() + zd;
    Surrogate sur{xd,
                  v.round() - v,
                  at::where(c < range.qmin, -1.0, at::where(c > range.qmax, 1.0, 0.0)),
                  zd,
                  static_cast<double>(range.qmin),
                  static_cast<double>(range.qmax)};
    REQUIRE((sur.region != 0).any().item<bool>());
    const at::Tensor gd = g.to(at::kDouble);
    auto loss = [&](const at::Tensor& xx, const at::Tensor& ss, const at::Tensor& zz) {
      return (sur.eval(xx, ss, zz) * gd).sum(1);  // per channel
    };
    const double h = 1e-6;
    // d/ds per channel
    const at::Tensor fd_s =
        (loss(xd, sd * (1 + h), zd) - loss(xd, sd * (1 - h), zd)) / (2 * h * sd.view({3}));
    REQUIRE(at::allclose(s.grad().to(at::kDouble), fd_s * gf, 1e-4, 1e-6));
    // d/dx per element: perturb all at once (the surrogate is separable in x)
    const at::Tensor fd_x = ((sur.eval(xd + h, sd, zd) - sur.eval(xd - h, sd, zd)) / (2 * h)) * gd;
    REQUIRE(at::allclose(xg.grad().to(at::kDouble), fd_x, 1e-5, 1e-6));
    if (asym) {
      const at::Tensor fd_z = (loss(xd, sd, zd + h) - loss(xd, sd, zd - h)) / (2 * h);
      REQUIRE(at::allclose(z.grad().to(at::kDouble), fd_z * gf, 1e-4, 1e-6));
    }
  }
}

TEST_CASE("LSQ forward equals ATen's learnable fake quant bit for bit, gradients agree",
          "[fake_quant][lsq][aten]") {
  const QuantSpec spec = QuantSpec::from_name("int4").with(Granularity::per_axis(0));
  const at::Tensor x = qat::test::randn({8, 64}, 9);
  const at::Tensor s0 = x.abs().amax(1) / 5.0;
  at::Tensor s = s0.clone().requires_grad_(true);
  at::Tensor xa = x.clone().requires_grad_(true);
  const at::Tensor g = qat::test::randn({8, 64}, 10);
  const double gf = 1.0;
  const at::Tensor y = qat::fake_quant::fake_quant_lsq(xa, s, at::Tensor(), spec, gf);
  y.backward(g);

  at::Tensor s_ref = s0.clone().requires_grad_(true);
  at::Tensor z_ref = at::zeros({8}).requires_grad_(true);
  at::Tensor x_ref = x.clone().requires_grad_(true);
  const at::Tensor y_ref =
      at::_fake_quantize_learnable_per_channel_affine(x_ref, s_ref, z_ref, 0, -8, 7, gf);
  y_ref.backward(g);
  REQUIRE(qat::test::bit_equal(y.detach(), y_ref.detach()));
  REQUIRE(at::equal(xa.grad(), x_ref.grad()));
  // ATen divides x/s where we multiply by 1/s: gradients agree to float rounding.
  REQUIRE(at::allclose(s.grad(), s_ref.grad(), 1e-4, 1e-5));
}

TEST_CASE("LSQ rejects formats without an integer grid and bad shapes",
          "[fake_quant][lsq][errors]") {
  const QuantSpec fp8 = QuantSpec::from_name("fp8_e4m3");
  REQUIRE_THROWS_WITH(
      qat::fake_quant::fake_quant_lsq(at::ones({2, 16}), at::ones({}), {}, fp8, 1.0),
      Catch::Contains("LSQ needs an integer grid"));
  const QuantSpec i4 = QuantSpec::from_name("int4").with(Granularity::per_axis(0));
  REQUIRE_THROWS_WITH(
      qat::fake_quant::fake_quant_lsq(at::ones({2, 16}), at::ones({3}), {}, i4, 1.0),
      Catch::Contains("expected 2 scales, got 3"));
  const QuantSpec u4 = QuantSpec::from_name("uint4");
  REQUIRE_THROWS_WITH(qat::fake_quant::fake_quant_lsq(at::ones({2, 16}), at::ones({}), {}, u4, 1.0),
                      Catch::Contains("needs a zero_point"));
}

namespace {

// ggml's rounding of a block format against a given d (and m), in float64 from the format's
// definition (ggml-quants.c's quantize_row_*_ref): the signed level q of v = (x - m) / d.
at::Tensor ggml_level(const std::string& f, const at::Tensor& v) {
  if (f == "gguf_q8_0") return (v.abs() + 0.5).floor().mul(v.sign()).clamp(-127, 127);  // roundf
  if (f == "gguf_q4_0") return (v + 8.5).trunc().clamp(0, 15) - 8;
  if (f == "gguf_q5_0") return (v + 16.5).trunc().clamp(0, 31) - 16;
  if (f == "gguf_q4_1") return (v + 0.5).trunc().clamp(0, 15);
  return (v + 0.5).trunc().clamp(0, 31);  // gguf_q5_1
}

}  // namespace

TEST_CASE(
    "learned ggml block scales: the forward stores d and m as fp16, gradients match float64 "
    "finite differences",
    "[fake_quant][learned_blocks][grad]") {
  for (const std::string f : {"gguf_q8_0", "gguf_q4_0", "gguf_q4_1", "gguf_q5_0", "gguf_q5_1"}) {
    CAPTURE(f);
    const QuantSpec spec = QuantSpec::from_name(f);
    const bool affine = spec.has_zero_point();
    const at::Tensor x = qat::test::randn({3, 64}, 21);
    const qat::ops::QParams ggml = qat::ops::choose_qparams(x, spec);  // ggml's d (and m), [3, 2]
    // Scales 0.8x ggml's and mins moved up, so that elements clip at both ends.
    at::Tensor d = (ggml.scale * 0.8).requires_grad_(true);
    at::Tensor m = affine ? (ggml.zero + 0.3 * ggml.scale).requires_grad_(true) : at::Tensor();
    at::Tensor xg = x.clone().requires_grad_(true);
    const at::Tensor g = qat::test::randn({3, 64}, 22);
    const double gf = 0.37;
    const at::Tensor y = qat::fake_quant::fake_quant_gguf_learned(xg, d, m, spec, gf);
    y.backward(g);

    // The forward: fp16 d and m, ggml's rounding, computed independently in float64.
    auto per_element = [](const at::Tensor& p) { return p.repeat_interleave(32, 1); };
    const at::Tensor dh = d.detach().to(at::kHalf).to(at::kDouble);
    const at::Tensor mh = affine ? m.detach().to(at::kHalf).to(at::kDouble) : at::zeros_like(dh);
    const at::Tensor de = per_element(dh), me = per_element(mh), xd = x.to(at::kDouble);
    const at::Tensor v = (xd - me) / de;
    const at::Tensor q = ggml_level(f, v);
    REQUIRE(at::allclose(y.detach().to(at::kDouble), q * de + me, 1e-6, 1e-7));
    REQUIRE(((v - q).abs() > 0.5).any().item<bool>());                   // the case really clips
    if (f == "gguf_q4_0") REQUIRE((ggml.scale < 0).any().item<bool>());  // ggml's d is signed

    // The straight-through surrogate, frozen at this point: y = x + r d inside (r = q - v),
    // q d + m where the rounding clamped.
    const at::Tensor inside = (v - q).abs() <= 0.5, r = q - v;
    auto surrogate = [&](const at::Tensor& xx, const at::Tensor& dd, const at::Tensor& mm) {
      return at::where(inside, xx + r * per_element(dd), q * per_element(dd) + per_element(mm));
    };
    const at::Tensor gd = g.to(at::kDouble);
    auto block_loss = [&](const at::Tensor& xx, const at::Tensor& dd, const at::Tensor& mm) {
      return (surrogate(xx, dd, mm) * gd).view({3, 2, 32}).sum(2);
    };
    const double h = 1e-6;
    const at::Tensor fd_d =
        (block_loss(xd, dh * (1 + h), mh) - block_loss(xd, dh * (1 - h), mh)) / (2 * h * dh);
    REQUIRE(at::allclose(d.grad().to(at::kDouble), fd_d * gf, 1e-4, 1e-6));
    const at::Tensor fd_x = (surrogate(xd + h, dh, mh) - surrogate(xd - h, dh, mh)) / (2 * h) * gd;
    REQUIRE(at::allclose(xg.grad().to(at::kDouble), fd_x, 1e-5, 1e-6));
    if (affine) {
      const at::Tensor fd_m = (block_loss(xd, dh, mh + h) - block_loss(xd, dh, mh - h)) / (2 * h);
      REQUIRE(at::allclose(m.grad().to(at::kDouble), fd_m * gf, 1e-4, 1e-6));
    }
  }
}

TEST_CASE("FakeQuantizer learns ggml block scales from ggml's rule and rejects what cannot learn",
          "[fake_quant][learned_blocks]") {
  using qat::fake_quant::FakeQuantizer;
  using qat::fake_quant::FakeQuantizerConfig;
  using qat::fake_quant::ScaleMode;
  const at::Tensor w = qat::test::randn({4, 64}, 23);
  FakeQuantizerConfig c;
  c.spec = QuantSpec::from_name("gguf_q4_1");
  c.scale_mode = ScaleMode::kLearnable;
  FakeQuantizer fq(c, w);
  fq->train();
  const auto params = fq->named_parameters();
  REQUIRE(params.size() == 2);  // d and m per block
  const qat::ops::QParams ggml = qat::ops::choose_qparams(w, c.spec);
  REQUIRE(at::equal(params["scale"], ggml.scale));
  REQUIRE(at::equal(params["zero_point"], ggml.zero));
  // qparams_for gives the stored (fp16) values, and the forward is the fake quant with them.
  const qat::ops::QParams stored = fq->qparams_for(w);
  REQUIRE(at::equal(stored.scale, ggml.scale.to(at::kHalf).to(at::kFloat)));
  at::Tensor y = fq->forward(w);
  REQUIRE(qat::test::bit_equal(y.detach(), qat::ops::fake_quantize(w, c.spec, stored, false).y));
  // A gradient step moves d and m; the forward follows the stored values.
  y.pow(2).sum().backward();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : fq->parameters()) p.sub_(p.grad() * 1e-2);
  }
  REQUIRE_FALSE(at::equal(fq->qparams_for(w).scale, stored.scale));
  REQUIRE(qat::test::bit_equal(fq->forward(w).detach(),
                               qat::ops::fake_quantize(w, c.spec, fq->qparams_for(w), false).y));

  FakeQuantizerConfig bad = c;
  bad.range.method = qat::fake_quant::RangeMethod::kPercentile;
  REQUIRE_THROWS_WITH(FakeQuantizer(bad, w), Catch::Contains("must be minmax"));
  bad = c;
  bad.scale_mode = ScaleMode::kStatic;
  REQUIRE_THROWS_WITH(FakeQuantizer(bad, w), Catch::Contains("'dynamic' or 'learnable'"));
  REQUIRE_THROWS_WITH(FakeQuantizer(c), Catch::Contains("are for weights"));
  bad = c;
  bad.spec = QuantSpec::from_name("nf4");
  REQUIRE_THROWS_WITH(FakeQuantizer(bad, w), Catch::Contains("'dynamic', not 'lsq'"));
}

TEST_CASE(
    "learned k-quant scales: the forward is the dequantized blocks, gradients match float64 "
    "finite differences",
    "[fake_quant][learned_blocks][kquant][grad]") {
  using qat::fake_quant::KQuantLearned;
  for (const std::string f : {"gguf_q4_k", "gguf_q5_k", "gguf_q6_k"}) {
    CAPTURE(f);
    const QuantSpec spec = QuantSpec::from_name(f);
    const bool affine = f != "gguf_q6_k";
    const int64_t subs = affine ? 8 : 16, sub = 256 / subs;
    const at::Tensor x = qat::test::randn({2, 512}, 31);
    const KQuantLearned init = qat::fake_quant::kquant_learned_init(x, spec);
    // Where training starts is ggml's own quantization.
    REQUIRE(qat::test::bit_equal(qat::fake_quant::fake_quant_kquant_learned(x, init, spec),
                                 qat::ops::fake_quantize_kquant(x, spec)));
    // Moved off it: smaller d (the largest sub-block codes clamp at their top), smaller sub-block
    // scales (elements clip), larger mins.
    at::Tensor d = (init.d * 0.8).requires_grad_(true);
    at::Tensor sub_scale = (init.sub_scale * 0.85).requires_grad_(true);
    at::Tensor dmin = affine ? (init.dmin * 1.1).requires_grad_(true) : at::Tensor();
    at::Tensor sub_min = affine ? (init.sub_min * 1.2 + 0.01).requires_grad_(true) : at::Tensor();
    const KQuantLearned p{d, dmin, sub_scale, sub_min};
    at::Tensor xg = x.clone().requires_grad_(true);
    const at::Tensor y = qat::fake_quant::fake_quant_kquant_learned(xg, p, spec);
    // The forward is what the exported blocks dequantize to, bit for bit.
    const at::Tensor blocks =
        qat::ops::quantize_kquant_with(x, qat::fake_quant::kquant_stored_params(p, spec), spec);
    REQUIRE(
        qat::test::bit_equal(y.detach(), qat::ops::dequantize_kquant(blocks, spec, at::kFloat)));
    const at::Tensor g = qat::test::randn({2, 512}, 32);
    y.backward(g);

    // The frozen straight-through surrogate in float64, at the stored point.
    const at::Tensor dh = d.detach().to(at::kHalf).to(at::kDouble);
    const at::Tensor dmh =
        affine ? dmin.detach().to(at::kHalf).to(at::kDouble) : at::zeros_like(dh);
    const at::Tensor t0 = sub_scale.detach().to(at::kDouble),
                     m0 = affine ? sub_min.detach().to(at::kDouble) : at::zeros_like(t0);
    const int lo = affine ? 0 : -128, hi = affine ? 63 : 127;
    auto per_sub = [&](const at::Tensor& h) { return h.repeat_interleave(subs, 1); };
    auto per_el = [&](const at::Tensor& v) { return v.repeat_interleave(sub, 1); };
    const at::Tensor u = t0 / per_sub(dh), sc = u.round().clamp(lo, hi);
    const at::Tensor in1 = (u - sc).abs() <= 0.5, r1 = sc - u;
    const at::Tensor um = affine ? m0 / per_sub(dmh) : at::zeros_like(u);
    const at::Tensor mn = um.round().clamp(0, 63);
    const at::Tensor in1m = (um - mn).abs() <= 0.5, r1m = mn - um;
    REQUIRE(in1.logical_not().any().item<bool>());  // some sub-block codes clamp
    const at::Tensor xd = x.to(at::kDouble);
    const at::Tensor dj0 = per_el(per_sub(dh) * sc), mj0 = per_el(per_sub(dmh) * mn);
    const at::Tensor v = (xd + mj0) / dj0;
    const at::Tensor level = v.round().clamp(affine ? 0 : -32, f == "gguf_q4_k" ? 15 : 31);
    const at::Tensor in2 = (v - level).abs() <= 0.5, r2 = level - v;
    REQUIRE(in2.logical_not().any().item<bool>());  // some elements clip
    auto surrogate = [&](const at::Tensor& xx, const at::Tensor& hd, const at::Tensor& tt,
                         const at::Tensor& hm, const at::Tensor& mm) {
      const at::Tensor dj = at::where(in1, tt + per_sub(hd) * r1, per_sub(hd) * sc);
      const at::Tensor mj = at::where(in1m, mm + per_sub(hm) * r1m, per_sub(hm) * mn);
      return at::where(in2, xx + per_el(dj) * r2, per_el(dj) * level - per_el(mj));
    };
    const at::Tensor gd = g.to(at::kDouble);
    auto loss_by = [&](int64_t group, const at::Tensor& yy) {
      return (yy * gd).view({2, -1, group}).sum(2);
    };
    const double h = 1e-6;
    const double gf_sub = 1.0 / std::sqrt(static_cast<double>(sub * (f == "gguf_q4_k" ? 15 : 31)));
    const double gf_super = gf_sub / std::sqrt(static_cast<double>(subs * hi));
    // d (per super-block), sub-block scales (per sub-block), x (per element).
    const at::Tensor fd_d = (loss_by(256, surrogate(xd, dh * (1 + h), t0, dmh, m0)) -
                             loss_by(256, surrogate(xd, dh * (1 - h), t0, dmh, m0))) /
                            (2 * h * dh);
    CHECK(at::allclose(d.grad().to(at::kDouble), fd_d * gf_super, 1e-4, 1e-7));
    const at::Tensor fd_t = (loss_by(sub, surrogate(xd, dh, t0 + h, dmh, m0)) -
                             loss_by(sub, surrogate(xd, dh, t0 - h, dmh, m0))) /
                            (2 * h);
    CHECK(at::allclose(sub_scale.grad().to(at::kDouble), fd_t * gf_sub, 1e-4, 1e-7));
    const at::Tensor fd_x =
        (surrogate(xd + h, dh, t0, dmh, m0) - surrogate(xd - h, dh, t0, dmh, m0)) / (2 * h) * gd;
    CHECK(at::allclose(xg.grad().to(at::kDouble), fd_x, 1e-5, 1e-6));
    if (affine) {
      const at::Tensor fd_dm = (loss_by(256, surrogate(xd, dh, t0, dmh * (1 + h), m0)) -
                                loss_by(256, surrogate(xd, dh, t0, dmh * (1 - h), m0))) /
                               (2 * h * dmh);
      CHECK(at::allclose(dmin.grad().to(at::kDouble), fd_dm * gf_super, 1e-4, 1e-7));
      const at::Tensor fd_m = (loss_by(sub, surrogate(xd, dh, t0, dmh, m0 + h)) -
                               loss_by(sub, surrogate(xd, dh, t0, dmh, m0 - h))) /
                              (2 * h);
      CHECK(at::allclose(sub_min.grad().to(at::kDouble), fd_m * gf_sub, 1e-4, 1e-7));
    }
  }
}
