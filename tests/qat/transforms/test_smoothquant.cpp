// SmoothQuant (qat/transforms/smoothquant.h): the scales are the paper's formula (checked in
// float64), folding them leaves the float model's function unchanged, and on inputs with outlier
// channels they lower a W8A8 layer's output error (int8 per-channel weights, int8 per-token
// activations) well below the unsmoothed layer's; the reported errors are recomputed
// independently.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "ops/quantize.h"
#include "qat/models/llama.h"
#include "qat/nn/module_walk.h"
#include "qat/transforms/prepare.h"
#include "qat/transforms/smoothquant.h"
#include "tests/qat/models/tiny_llama.h"
#include "tests/qat/transforms/transform_helpers.h"
#include "tests/support/helpers.h"

using namespace qat;
using fake_quant::FakeQuantizerConfig;
using scheme::Granularity;
using scheme::QuantSpec;

namespace {

// W8A8: int8 weights per output channel, int8 activations per token (dynamic).
nn::FakeQuantLinearConfig w8a8() {
  nn::FakeQuantLinearConfig c;
  c.weight = FakeQuantizerConfig{};
  c.weight->spec = QuantSpec::from_name("int8").with(Granularity::per_axis(0));
  FakeQuantizerConfig a;
  a.spec = QuantSpec::from_name("int8").with(Granularity::per_token());
  c.activation = a;
  return c;
}

// Activations with a few outlier channels (x50), as the paper shows for LLMs.
at::Tensor outlier_inputs(int64_t rows, int64_t k) {
  at::Tensor x = at::randn({rows, k});
  for (int64_t c : {5, 33, 70}) x.select(1, c).mul_(50);
  return x;
}

}  // namespace

TEST_CASE("smoothquant's scales are the paper's formula and lower W8A8 error on outlier inputs",
          "[smoothquant]") {
  torch::manual_seed(21);
  const int64_t k = 128;
  const at::Tensor w = at::randn({64, k}) * 0.05;
  nn::Linear dense(k, 64, false);
  {
    torch::NoGradGuard g;
    dense.weight().copy_(w);
  }
  nn::FakeQuantLinear layer(dense, w8a8());
  layer.eval();
  const at::Tensor x = outlier_inputs(256, k);
  transforms::SmoothQuantConfig cfg;
  const auto s = transforms::smoothquant_scales({&layer}, x, cfg);
  // s_j = max|X_j|^0.5 / max|W_j|^0.5, in float64.
  const at::Tensor xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  const at::Tensor want = xd.abs().amax(0).pow(0.5) / wd.abs().amax(0).pow(0.5);
  CHECK(at::allclose(s.scales.to(at::kDouble), want, 1e-5, 0));
  CHECK(s.awq_error < 0.5 * s.rtn_error);
  // The reported errors, recomputed in float64 from the reference rounding of both quantizers.
  const nn::FakeQuantLinearConfig lc = w8a8();
  auto error = [&](const at::Tensor& scales) {
    const QuantSpec& ws = lc.weight->spec;
    const QuantSpec& as = lc.activation->spec;
    const at::Tensor q = ops::fake_quantize_dynamic(w * scales, ws, false).y;
    const at::Tensor a = ops::fake_quantize_dynamic(x / scales, as, false).y;
    const at::Tensor ref = at::matmul(xd, wd.t());
    const at::Tensor out = at::matmul(a.to(at::kDouble), q.to(at::kDouble).t());
    return ((out - ref).pow(2).sum() / ref.pow(2).sum()).item<double>();
  };
  CHECK(error(at::ones({k})) == Approx(s.rtn_error).epsilon(1e-4));
  CHECK(error(s.scales) == Approx(s.awq_error).epsilon(1e-4));
  // alpha = 0 divides by max|W_j|: the inputs keep their outliers and the error stays high.
  transforms::SmoothQuantConfig none;
  none.alpha = 0;
  CHECK(transforms::smoothquant_scales({&layer}, x, none).awq_error > 2 * s.awq_error);
  none.alpha = 1.5;
  CHECK_THROWS_WITH(none.validate(), Catch::Contains("migration strength"));
}

TEST_CASE("smoothquant's folding leaves the float model's logits unchanged", "[smoothquant]") {
  torch::manual_seed(22);
  auto cfg = test::tiny_llama_config(97, /*qkv_bias=*/true);
  cfg.num_key_value_heads = 4;  // v_proj's outputs are o_proj's inputs: o is smoothed too
  models::LlamaForCausalLM model(cfg);
  transforms::PrepareConfig pc;
  pc.layer = w8a8();
  transforms::prepare(model, pc);
  const at::Tensor ids = at::randint(0, 97, {2, 24}, at::kLong);
  test::set_fake_quant(model, false);
  const at::Tensor before = test::eval_logits(model, ids);
  test::set_fake_quant(model, true);
  const at::Tensor quantized_before = test::eval_logits(model, ids);

  std::vector<transforms::CalibrationBatch> batches;
  for (int b = 0; b < 2; ++b) batches.push_back({at::randint(0, 97, {2, 40}, at::kLong), {}});
  std::vector<std::string> lines;
  const auto reports = transforms::smoothquant_llama(
      model, batches, {}, [&](const std::string& l) { lines.push_back(l); });
  REQUIRE(reports.size() == 8);  // 2 layers x (qkv, o, gate/up, down)
  CHECK(lines.size() == 2);
  CHECK(lines[0].rfind("smoothquant: layer 1/2: 4 groups scaled", 0) == 0);
  for (const auto& r : reports) {
    CAPTURE(r.name);
    CHECK(r.skipped.empty());
    CHECK(r.rows == 4 * 40);
    CHECK(r.alpha == 0.5);
  }
  test::set_fake_quant(model, false);
  const at::Tensor after = test::eval_logits(model, ids);
  CHECK((after - before).abs().max().item<double>() < 1e-4 * before.abs().max().item<double>());
  test::set_fake_quant(model, true);
  CHECK_FALSE(
      at::equal(test::eval_logits(model, ids), quantized_before));  // the rounding did change
}
