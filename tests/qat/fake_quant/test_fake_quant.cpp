// Gradients of the fake-quant functions: STE, clipped STE, LSQ/LSQ+ against float64 finite
// differences of the straight-through surrogate, and LSQ against ATen's learnable fake quant.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <catch2/catch.hpp>

#include "qat/fake_quant/fake_quant.h"
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
