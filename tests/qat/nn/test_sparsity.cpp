#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <string>

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

namespace {

// The fake quantization of a float32 weight in groups of 32 consecutive elements, written out
// from the formats' definitions (docs/numerics.md), in plain loops:
//   int4:      s = max|x| / 7 (1 for an all-zero group), q = clamp(rne(x * (1/s)), -8, 7),
//              y = q * s;
//   gguf_q8_0: d = max|x| / 127, q = round half away from zero (x * (1/d)) (0 when d = 0),
//              y = q * fp16(d), fp16 rounded to nearest even.
at::Tensor reference_fake_quant(const at::Tensor& w, const std::string& format) {
  const at::Tensor x = w.contiguous();
  at::Tensor y = at::empty_like(x);
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  constexpr int64_t kGroup = 32;
  for (int64_t g = 0; g < x.numel(); g += kGroup) {
    float amax = 0.0f;
    for (int64_t i = g; i < g + kGroup; ++i) amax = std::max(amax, std::fabs(in[i]));
    if (format == "int4") {
      const float s = amax > 0.0f ? amax / 7.0f : 1.0f;
      const float inv = 1.0f / s;
      for (int64_t i = g; i < g + kGroup; ++i)
        out[i] = std::min(std::max(std::nearbyint(in[i] * inv), -8.0f), 7.0f) * s;
    } else {
      const float d = amax / 127.0f;
      const float inv = d != 0.0f ? 1.0f / d : 0.0f;
      const float d16 = static_cast<float>(c10::Half(d));
      for (int64_t i = g; i < g + kGroup; ++i) out[i] = std::round(in[i] * inv) * d16;
    }
  }
  return y;
}

}  // namespace

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
    // The kept weights are the fake quant of the masked weight (the pruned ones then quantize to
    // 0), both in effective_weight() and in the forward: not the dense weight, not the unmasked
    // weight's quantization.
    if (f == "int4" || f == "gguf_q8_0") {
      const at::Tensor masked = layer.weight().detach() * layer.sparsity_mask();
      const at::Tensor expected = reference_fake_quant(masked, f);
      REQUIRE_FALSE(at::equal(expected, masked));  // the quantization changes the kept weights
      REQUIRE(at::equal(we, expected));
      const at::Tensor x = qat::test::randn({3, 128}, 7);
      at::NoGradGuard no_grad;
      REQUIRE(at::equal(layer.forward(x), at::linear(x, expected, layer.bias())));
    }
  }
}
