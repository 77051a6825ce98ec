#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "qat/nn/fake_quant_linear.h"
#include "qat/nn/sparsity.h"
#include "tests/support/helpers.h"

TEST_CASE("2:4 mask keeps the two largest magnitudes of every four, lower index on ties",
          "[sparsity]") {
  const at::Tensor w = qat::test::randn({8, 64}, 1);
  const at::Tensor m = qat::nn::mask_2_4(w);
  REQUIRE(at::equal(m.reshape({-1, 4}).sum(1), at::full({128}, 2, at::kLong)));
  // Independent check: every kept |w| >= every dropped |w| in its group of four.
  const at::Tensor a = w.abs().reshape({-1, 4}), mk = m.reshape({-1, 4});
  const at::Tensor min_kept = at::where(mk, a, at::full_like(a, INFINITY)).amin(1);
  const at::Tensor max_dropped = at::where(mk, at::full_like(a, -1.0), a).amax(1);
  REQUIRE((min_kept >= max_dropped).all().item<bool>());
  const at::Tensor ties = at::tensor({1.0f, -1.0f, 1.0f, 0.5f}).view({1, 4});
  REQUIRE(at::equal(qat::nn::mask_2_4(ties), at::tensor({1, 1, 0, 0}).to(at::kBool).view({1, 4})));
  REQUIRE_THROWS_WITH(qat::nn::mask_2_4(at::ones({2, 6})), Catch::Contains("multiple of 4"));
}

TEST_CASE("2:4 sparsity composes with fake quant: pruned weights stay exactly zero",
          "[sparsity][fake_quant]") {
  for (const std::string f : {"int4", "uint4", "fp8_e4m3", "nf4", "gguf_q4_0", "gguf_q8_0"}) {
    qat::nn::Linear dense(128, 16);
    qat::nn::FakeQuantLinearConfig cfg;
    qat::fake_quant::FakeQuantizerConfig w;
    w.spec = qat::scheme::QuantSpec::from_name(f);
    if (w.spec.format == qat::scheme::Format::kInt || w.spec.format == qat::scheme::Format::kUInt ||
        w.spec.format == qat::scheme::Format::kFp8E4M3)
      w.spec.granularity = qat::scheme::Granularity::per_group(32);
    cfg.weight = w;
    cfg.sparsity.enabled = true;
    qat::nn::FakeQuantLinear layer(dense, cfg);
    const at::Tensor we = layer.effective_weight();
    CAPTURE(f);
    REQUIRE(at::equal(we.masked_select(layer.sparsity_mask().logical_not()), at::zeros({16 * 64})));
  }
}
