// Range setting (min-max, percentile, MSE search), observers, and FakeQuantizer's delay/freeze.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "qat/fake_quant/fake_quantizer.h"
#include "qat/fake_quant/observer.h"
#include "tests/support/helpers.h"

using namespace qat::fake_quant;
using qat::scheme::Granularity;
using qat::scheme::QuantSpec;

TEST_CASE("min-max range is each group's min and max", "[observer]") {
  const QuantSpec spec = QuantSpec::from_name("uint8").with(Granularity::per_axis(1));
  const at::Tensor x = qat::test::randn({5, 6, 7}, 1);
  auto [lo, hi] = compute_range(x, spec, RangeConfig{});
  REQUIRE(at::equal(lo, x.amin({0, 2})));
  REQUIRE(at::equal(hi, x.amax({0, 2})));
}

TEST_CASE("percentile range clips a planted outlier, 100 equals min-max", "[observer]") {
  const QuantSpec spec = QuantSpec::from_name("int8").with(Granularity::per_axis(0));
  at::Tensor x = qat::test::randn({4, 1000}, 2);
  x[1][17] = 1000.0f;
  RangeConfig p999;
  p999.method = RangeMethod::kPercentile;
  p999.percentile = 99.9;
  auto [lo, hi] = compute_range(x, spec, p999);
  REQUIRE(hi[1].item<float>() < 10.0f);
  REQUIRE(at::equal(lo, -hi));
  // Nearest-rank percentile, written independently: the ceil(0.999 * n)-th smallest |x|.
  const at::Tensor sorted = std::get<0>(x.abs().sort(1));
  REQUIRE(at::equal(hi, sorted.select(1, 999 - 1)));
  RangeConfig p100 = p999;
  p100.percentile = 100.0;
  REQUIRE(at::equal(compute_range(x, spec, p100).second, x.abs().amax(1)));
}

TEST_CASE("MSE search never does worse than min-max and wins on heavy tails", "[observer]") {
  const QuantSpec spec = QuantSpec::from_name("int4").with(Granularity::per_group(64));
  at::Tensor x = qat::test::randn({16, 256}, 3);
  x = x * x * x;  // heavy-tailed
  RangeConfig mse;
  mse.method = RangeMethod::kMse;
  const auto err = [&](const qat::ops::QParams& qp) {
    const at::Tensor y = qat::ops::fake_quantize(x, spec, qp, false).y;
    return (y - x).square().reshape({-1, 64}).sum(1);
  };
  const at::Tensor e_mse = err(range_qparams(x, spec, mse));
  const at::Tensor e_mm = err(range_qparams(x, spec, RangeConfig{}));
  REQUIRE((e_mse <= e_mm).all().item<bool>());
  REQUIRE((e_mse < e_mm * 0.9).any().item<bool>());
}

TEST_CASE("observers: running min-max and moving average", "[observer]") {
  const QuantSpec spec = QuantSpec::from_name("int8").with(Granularity::per_axis(0));
  const at::Tensor a = qat::test::randn({3, 50}, 4), b = qat::test::randn({3, 50}, 5) * 2;
  Observer mm(spec, {}, Observer::Mode::kRunningMinMax);
  mm.update(a);
  mm.update(b);
  REQUIRE(at::equal(mm.hi(), at::maximum(a.amax(1), b.amax(1))));
  Observer ema(spec, {}, Observer::Mode::kMovingAverage, 0.25);
  ema.update(a);
  ema.update(b);
  REQUIRE(at::allclose(ema.hi(), a.amax(1) * 0.75 + b.amax(1) * 0.25));
  const auto qp = ema.qparams();
  REQUIRE(at::allclose(qp.scale, at::maximum(ema.hi().abs(), ema.lo().abs()) / 127.0));
  REQUIRE_THROWS_WITH(
      Observer(QuantSpec::from_name("gguf_q4_0"), {}, Observer::Mode::kRunningMinMax),
      Catch::Contains("derives every block's scale"));
}

TEST_CASE("FakeQuantizer: identity during the delay, quantizes after, static observer freezes",
          "[observer][fake_quantizer]") {
  FakeQuantizerConfig cfg;
  cfg.spec = QuantSpec::from_name("int4");
  cfg.scale_mode = ScaleMode::kStatic;
  cfg.delay_steps = 2;
  cfg.freeze_observer_after = 3;
  FakeQuantizer fq(cfg);
  fq->train();
  const at::Tensor x = qat::test::randn({4, 32}, 6);
  REQUIRE(at::equal(fq->forward(x), x));  // step 0
  REQUIRE(at::equal(fq->forward(x), x));  // step 1
  const at::Tensor y2 = fq->forward(x);   // step 2: observes x, quantizes
  REQUIRE_FALSE(at::equal(y2, x));
  fq->forward(x * 1.5);  // step 3: frozen (freeze_observer_after = 3)
  const at::Tensor big = x * 4;
  fq->forward(big);  // frozen: the range must not grow
  const auto qp = fq->qparams_for(x);
  REQUIRE(qp.scale.item<float>() == Approx(x.abs().max().item<float>() / 7.0).epsilon(1e-6));
  REQUIRE(fq->step() == 5);

  FakeQuantizerConfig bad = cfg;
  bad.spec = QuantSpec::from_name("int8").with(Granularity::per_token());
  REQUIRE_THROWS_WITH(FakeQuantizer(bad),
                      Catch::Contains("use scale mode 'dynamic' for per_token"));
}
