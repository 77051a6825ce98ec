// AWQ (qat/transforms/awq.h): folding the scales leaves the float model's function unchanged; the
// search lowers a layer's output error below round to nearest on inputs with salient channels, and
// reports the error an independent float64 computation with ggml's reference rounding gives;
// awq_llama scales every group it can fold and says why it leaves the others.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "ops/quantize.h"
#include "qat/models/llama.h"
#include "qat/nn/module_walk.h"
#include "qat/transforms/awq.h"
#include "qat/transforms/prepare.h"
#include "tests/qat/models/tiny_llama.h"
#include "tests/qat/transforms/transform_helpers.h"
#include "tests/support/helpers.h"

using namespace qat;
using fake_quant::FakeQuantizerConfig;
using scheme::Granularity;
using scheme::QuantSpec;

namespace {

// The weight formats of these tests: groups of 32 where the format has no fixed block.
FakeQuantizerConfig weight_cfg(const std::string& name) {
  return test::weight_cfg(name, Granularity::per_group(32));
}

std::vector<transforms::CalibrationBatch> batches(int64_t vocab, int n) {
  std::vector<transforms::CalibrationBatch> out;
  for (int b = 0; b < n; ++b) out.push_back({at::randint(0, vocab, {2, 40}, at::kLong), {}});
  return out;
}

// Inputs X = Z A with a few salient channels (x20), as LLM activations have.
at::Tensor salient_inputs(int64_t rows, int64_t k) {
  at::Tensor x = at::matmul(at::randn({rows, k / 4}), at::randn({k / 4, k}));
  x.select(1, 3).mul_(20);
  x.select(1, 17).mul_(20);
  x.select(1, 40).mul_(20);
  return x;
}

}  // namespace

TEST_CASE("awq's scale folding leaves the float model's logits unchanged", "[awq]") {
  torch::manual_seed(11);
  auto cfg = test::tiny_llama_config(97, /*qkv_bias=*/true);
  cfg.num_key_value_heads = 4;  // v_proj's outputs are o_proj's inputs: o is scaled too
  models::LlamaForCausalLM model(cfg);
  transforms::PrepareConfig pc;
  pc.layer.weight = weight_cfg("gguf_q4_0");
  transforms::prepare(model, pc);
  const at::Tensor ids = at::randint(0, 97, {2, 24}, at::kLong);
  test::set_fake_quant(model, false);
  const at::Tensor before = test::eval_logits(model, ids);
  test::set_fake_quant(model, true);
  const at::Tensor quantized_before = test::eval_logits(model, ids);

  std::vector<std::string> lines;
  const auto reports = transforms::awq_llama(model, batches(97, 2), {},
                                             [&](const std::string& l) { lines.push_back(l); });
  REQUIRE(reports.size() == 8);  // 2 layers x (qkv, o, gate/up, down)
  CHECK(lines.size() == 2);
  int moved = 0;
  for (const auto& r : reports) {
    CAPTURE(r.name);
    CHECK(r.skipped.empty());
    CHECK(r.rows == 4 * 40);
    moved += r.alpha > 0;
  }
  CHECK(moved > 0);
  CHECK(reports[0].name == "model.layers.0.self_attn.q_proj+k_proj+v_proj");

  test::set_fake_quant(model, false);
  const at::Tensor after = test::eval_logits(model, ids);
  CHECK((after - before).abs().max().item<double>() < 1e-4 * before.abs().max().item<double>());
  test::set_fake_quant(model, true);
  CHECK_FALSE(
      at::equal(test::eval_logits(model, ids), quantized_before));  // the rounding did change
}

TEST_CASE("awq leaves o_proj alone under grouped-query attention and refuses what it cannot scale",
          "[awq]") {
  torch::manual_seed(12);
  models::LlamaForCausalLM model(test::tiny_llama_config(97, false));  // 4 heads, 2 kv heads
  transforms::PrepareConfig pc;
  pc.layer.weight = weight_cfg("int4");
  pc.exclude = {"lm_head", "*embed*", "*down_proj"};
  transforms::prepare(model, pc);
  const auto reports = transforms::awq_llama(model, batches(97, 1), {});
  REQUIRE(reports.size() == 8);
  CHECK(reports[1].skipped.find("grouped-query attention") != std::string::npos);
  CHECK(reports[3].skipped.find("mlp.down_proj is not a fake-quantized linear") !=
        std::string::npos);
  CHECK(reports[0].skipped.empty());
  CHECK(reports[2].skipped.empty());

  models::LlamaForCausalLM bad(test::tiny_llama_config(97, false));
  transforms::PrepareConfig lsq = pc;
  lsq.layer.weight->scale_mode = fake_quant::ScaleMode::kLearnable;
  transforms::prepare(bad, lsq);
  CHECK_THROWS_WITH(
      transforms::check_awq_model(bad),
      Catch::Contains("model.layers.0.self_attn.") && Catch::Contains("scale_mode: dynamic"));
}

TEST_CASE("awq lowers a layer's output error below round to nearest on salient inputs", "[awq]") {
  torch::manual_seed(13);
  for (const std::string f : {"gguf_q4_0", "int4", "gguf_q4_k"}) {
    CAPTURE(f);
    const int64_t k = f == "gguf_q4_k" ? 256 : 128;
    const at::Tensor w = at::randn({48, k}) * 0.05;
    nn::Linear dense(k, 48, false);
    {
      torch::NoGradGuard g;
      dense.weight().copy_(w);
    }
    nn::FakeQuantLinearConfig lc;
    lc.weight = weight_cfg(f);
    nn::FakeQuantLinear layer(dense, lc);
    layer.eval();
    const at::Tensor x = salient_inputs(512, k);
    const auto s = transforms::awq_search({&layer}, x, {});
    CHECK(s.alpha > 0);
    CHECK(s.awq_error < 0.8 * s.rtn_error);
    // The reported errors, recomputed in float64 with the reference rounding of the format.
    const QuantSpec spec = lc.weight->spec;
    auto error = [&](const at::Tensor& scales) {
      const at::Tensor ref = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t());
      const at::Tensor q = ops::fake_quantize_dynamic(w * scales, spec, false).y;
      const at::Tensor out = at::matmul((x / scales).to(at::kDouble), q.to(at::kDouble).t());
      return ((out - ref).pow(2).sum() / ref.pow(2).sum()).item<double>();
    };
    CHECK(error(at::ones({k})) == Approx(s.rtn_error).epsilon(1e-4));
    CHECK(error(s.scales) == Approx(s.awq_error).epsilon(1e-4));
  }
}
