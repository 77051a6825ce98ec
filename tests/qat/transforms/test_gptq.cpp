// GPTQ (qat/transforms/gptq.h): the rounding equals an independent float64 implementation of the
// paper's update (explicit inverse Hessian, no Cholesky, no lazy batches); it lowers the output
// error below round to nearest on correlated inputs; with a diagonal Hessian it is round to
// nearest; and for every format the layer's fake quantization (what eval, convert and export
// compute) keeps the original scales and gives GPTQ's values bit for bit.
#include <ATen/ATen.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>

#include "ops/quantize.h"
#include "qat/models/llama.h"
#include "qat/transforms/gptq.h"
#include "qat/transforms/prepare.h"
#include "tests/qat/models/tiny_llama.h"
#include "tests/qat/transforms/transform_helpers.h"
#include "tests/support/helpers.h"

using namespace qat;
using fake_quant::FakeQuantizerConfig;
using fake_quant::ScaleMode;
using scheme::Granularity;
using scheme::QuantSpec;

namespace {

// test::weight_cfg with a running min/max observer.
FakeQuantizerConfig observed_weight_cfg(const std::string& name, Granularity g,
                                        ScaleMode mode = ScaleMode::kDynamic) {
  FakeQuantizerConfig c = test::weight_cfg(name, g, mode);
  c.observer_mode = fake_quant::Observer::Mode::kRunningMinMax;
  return c;
}

std::shared_ptr<nn::FakeQuantLinear> make_layer(const at::Tensor& w,
                                                const FakeQuantizerConfig& cfg) {
  nn::Linear dense(w.size(1), w.size(0), false, w.options());
  {
    torch::NoGradGuard g;
    dense.weight().copy_(w);
  }
  nn::FakeQuantLinearConfig lc;
  lc.weight = cfg;
  auto layer = std::make_shared<nn::FakeQuantLinear>(dense, lc);
  if (cfg.scale_mode == ScaleMode::kStatic) {  // calibrate the weight observer with one forward
    torch::NoGradGuard g;
    layer->train();
    layer->forward(at::zeros({1, w.size(1)}, w.options()));
    layer->eval();
  }
  return layer;
}

// Inputs with correlated features (what makes GPTQ beat round to nearest): X = Z A.
at::Tensor correlated_inputs(int64_t rows, int64_t k) {
  const at::Tensor z = at::randn({rows, k / 4});
  const at::Tensor a = at::randn({k / 4, k});
  return z.matmul(a) + 0.1 * at::randn({rows, k});
}

// The reference's rounding: fake quant with fixed (static) parameters.
std::function<at::Tensor(const at::Tensor&)> with_qparams(const QuantSpec& spec,
                                                          const ops::QParams& qp) {
  return [spec, qp](const at::Tensor& w) { return ops::fake_quantize(w, spec, qp, false).y; };
}

at::Tensor hessian_of(const at::Tensor& x) {
  transforms::HessianAccumulator acc(x.size(1));
  acc.add(x);
  return acc.hessian();
}

// The paper's equation (3) with the inverse Hessian updated explicitly (the OBQ form that the
// Cholesky formulation is an exact rewrite of), in float64, taking the columns in `order`; each
// column rounded by fake quant with the layer's fixed (static) parameters.
at::Tensor reference_gptq(const at::Tensor& w0, const at::Tensor& h, double damp,
                          const std::function<at::Tensor(const at::Tensor&)>& round,
                          const at::Tensor& order) {
  at::Tensor w = w0.to(at::kDouble).clone();
  at::Tensor hd = h.to(at::kDouble).index_select(0, order).index_select(1, order);
  hd = hd + at::eye(h.size(0), hd.options()) * (damp * hd.diagonal().mean().item<double>());
  at::Tensor hinv = at::linalg_inv(hd);  // over the columns in rounding order
  at::Tensor q = at::empty_like(w);
  for (int64_t t = 0; t < w.size(1); ++t) {
    const int64_t j = order[t].item<int64_t>();
    const at::Tensor qj = round(w.to(at::kFloat)).select(1, j).to(at::kDouble);
    q.select(1, j).copy_(qj);
    const double d = hinv[t][t].item<double>();
    const at::Tensor e = (w.select(1, j) - qj) / d;
    const at::Tensor rest = order.slice(0, t);
    w.index_copy_(1, rest, w.index_select(1, rest) - at::outer(e, hinv[t].slice(0, t)));
    hinv = hinv - at::outer(hinv.select(1, t), hinv[t]) / d;
  }
  return q;
}

double direct_output_error(const at::Tensor& x, const at::Tensor& w, const at::Tensor& q) {
  return (x.to(at::kDouble).matmul((w - q).to(at::kDouble).t())).pow(2).sum().item<double>();
}

}  // namespace

TEST_CASE("gptq equals a float64 reference of the paper's update (static scales)", "[gptq]") {
  torch::manual_seed(1);
  for (const bool act_order : {false, true}) {
    for (const std::string fmt : {"int4", "uint3", "int8"}) {  // GGUF blocks take no static scales
      DYNAMIC_SECTION(fmt << (act_order ? " act order" : "")) {
        const at::Tensor w = at::randn({24, 96});
        // Inputs of unequal energy, so that act order changes the order.
        const at::Tensor h = hessian_of(correlated_inputs(512, 96) * at::linspace(0.2, 3, 96));
        auto layer =
            make_layer(w, observed_weight_cfg(fmt, Granularity::per_group(32), ScaleMode::kStatic));
        const ops::QParams qp = layer->weight_quantizer()->qparams_for(w);
        const at::Tensor order = act_order ? std::get<1>(at::sort(h.diagonal(), true, 0, true))
                                           : at::arange(96, at::kLong);
        const at::Tensor ref = reference_gptq(
            w, h, 0.01, with_qparams(layer->weight_quantizer()->config().spec, qp), order);
        transforms::GptqConfig cfg;
        cfg.block_size = 40;  // blocks that do not divide the width
        cfg.act_order = act_order;
        const auto r = transforms::gptq_layer(*layer, h, cfg);
        const at::Tensor got = layer->effective_weight().to(at::kDouble);
        // float32 against float64: a value that lands within rounding noise of a tie may round the
        // other way and steer its row's later columns; nearly every element must agree.
        const double agree = got.eq(ref).to(at::kDouble).mean().item<double>();
        INFO("agreement " << agree << ", gptq error " << r.gptq_error << ", rtn " << r.rtn_error);
        CHECK(agree >= 0.98);
        CHECK(r.gptq_error < r.rtn_error);
      }
    }
  }
}

TEST_CASE("gptq's output error is below round to nearest's and its report measures it", "[gptq]") {
  torch::manual_seed(2);
  const at::Tensor x = correlated_inputs(1024, 128);
  const at::Tensor h = hessian_of(x);
  for (const std::string fmt :
       {"int4", "uint4", "gguf_q4_0", "gguf_q4_1", "gguf_q5_0", "nf4", "int3"}) {
    DYNAMIC_SECTION(fmt) {
      const at::Tensor w = at::randn({48, 128}) * 0.05;
      auto layer = make_layer(w, observed_weight_cfg(fmt, Granularity::per_group(64)));
      const at::Tensor rtn = layer->effective_weight();
      const auto r = transforms::gptq_layer(*layer, h, {});
      const at::Tensor q = layer->effective_weight();
      // The report's errors against a direct computation: E = (1/n) sum ||(W - Q) x||^2.
      const double n = static_cast<double>(x.size(0));
      const double energy = direct_output_error(x, w, at::zeros_like(w)) / n;
      CHECK(r.rtn_error == Approx(direct_output_error(x, w, rtn) / n / energy).epsilon(1e-3));
      CHECK(r.gptq_error == Approx(direct_output_error(x, w, q) / n / energy).epsilon(1e-3));
      INFO("gptq " << r.gptq_error << " rtn " << r.rtn_error);
      CHECK(r.gptq_error < 0.5 * r.rtn_error);  // measured: 0.08-0.11
    }
  }
}

TEST_CASE("gptq with a diagonal Hessian is round to nearest", "[gptq]") {
  torch::manual_seed(3);
  const at::Tensor h = at::diag(at::rand({64}) + 0.5);
  for (const std::string fmt : {"int4", "gguf_q4_1", "gguf_q8_0", "fp8_e4m3", "nf4"}) {
    DYNAMIC_SECTION(fmt) {
      const at::Tensor w = at::randn({16, 64});
      auto layer = make_layer(w, observed_weight_cfg(fmt, Granularity::per_axis(0)));
      const at::Tensor rtn = layer->effective_weight();
      const auto r = transforms::gptq_layer(*layer, h, {});
      CHECK(at::equal(layer->effective_weight(), rtn));
      CHECK(r.gptq_error == Approx(r.rtn_error));
    }
  }
}

TEST_CASE("gptq keeps each group's scale: the layer's dynamic fake quant is GPTQ's rounding",
          "[gptq]") {
  torch::manual_seed(4);
  const at::Tensor h = hessian_of(correlated_inputs(256, 64));
  struct Case {
    std::string fmt;
    Granularity g;
  };
  const std::vector<Case> cases = {{"int4", Granularity::per_group(32)},
                                   {"uint4", Granularity::per_axis(0)},
                                   {"int8", Granularity::per_tensor()},
                                   {"fp8_e4m3", Granularity::per_axis(0)},
                                   {"uint2", Granularity::per_axis(1)},
                                   {"nf4", {}},
                                   {"gguf_q4_0", {}},
                                   {"gguf_q4_1", {}},
                                   {"gguf_q5_1", {}},
                                   {"gguf_q8_0", {}}};
  for (const auto& c : cases) {
    for (const auto dtype : {at::kFloat, at::kBFloat16}) {
      DYNAMIC_SECTION(c.fmt << " " << c.g.to_string() << " " << dtype) {
        at::Tensor w = at::randn({8, 64});
        // Adversarial groups: a repeated maximum, min == -max (ggml's d takes the first of
        // them), a constant run, and two values one step apart.
        w[0].fill_(0.25);
        w[1].slice(0, 0, 32).copy_(at::linspace(-1, 1, 32));
        w[1][5] = 1.0;
        w[2].slice(0, 32).copy_(at::where(at::arange(32).remainder(2).eq(0), at::full({32}, 0.5),
                                          at::full({32}, -0.5)));
        w[3][7] = w[3].abs().max() * 2;
        w[3][9] = w[3][7];
        w = w.to(dtype);
        w[4].slice(0, 0, 32).fill_(1.0);
        w[4][3] = at::nextafter(w[4][3], at::full({}, 2.0, w.options())).item<float>();
        auto layer = make_layer(w, observed_weight_cfg(c.fmt, c.g));
        const QuantSpec spec = layer->weight_quantizer()->config().spec;
        const ops::QParams before = ops::choose_qparams(w, spec);
        transforms::gptq_layer(*layer, h, {});  // throws if the deployed weight is not GPTQ's
        const ops::QParams after = ops::choose_qparams(layer->weight(), spec);
        CHECK(at::equal(before.scale, after.scale));
        if (before.zero.defined()) CHECK(at::equal(before.zero, after.zero));
        CHECK(at::equal(ops::fake_quantize_dynamic(layer->weight(), spec, false).y,
                        layer->effective_weight()));
        CHECK(!at::equal(layer->weight(), w));
      }
    }
  }
}

TEST_CASE("gptq rounds against learned ggml block scales, as the float64 reference with them",
          "[gptq][learned_blocks]") {
  torch::manual_seed(5);
  for (const std::string fmt : {"gguf_q4_0", "gguf_q4_1", "gguf_q5_0", "gguf_q8_0"}) {
    DYNAMIC_SECTION(fmt) {
      const at::Tensor w = at::randn({16, 96});
      const at::Tensor h = hessian_of(correlated_inputs(512, 96));
      auto layer = make_layer(w, observed_weight_cfg(fmt, {}, ScaleMode::kLearnable));
      const auto fq = layer->weight_quantizer();
      const ops::QParams qp = fq->qparams_for(w);  // ggml's rule, stored as fp16
      const at::Tensor scale_before = fq->named_parameters()["scale"].clone();
      const at::Tensor ref = reference_gptq(w, h, 0.01, with_qparams(fq->config().spec, qp),
                                            at::arange(96, at::kLong));
      transforms::GptqConfig cfg;
      cfg.act_order = false;  // the reference's column order
      const auto r = transforms::gptq_layer(*layer, h, cfg);
      const double agree =
          layer->effective_weight().to(at::kDouble).eq(ref).to(at::kDouble).mean().item<double>();
      INFO("agreement " << agree);
      CHECK(agree >= 0.98);
      CHECK(r.gptq_error < r.rtn_error);
      // The learned scales are what GPTQ rounded against; they stay as they were.
      CHECK(at::equal(fq->named_parameters()["scale"], scale_before));
      CHECK(at::equal(ops::fake_quantize(layer->weight(), fq->config().spec, qp, false).y,
                      layer->effective_weight()));
    }
  }
}

TEST_CASE("gptq rounds k-quants against their learned scales, as the float64 reference with them",
          "[gptq][learned_blocks][kquant]") {
  torch::manual_seed(6);
  for (const std::string fmt : {"gguf_q4_k", "gguf_q5_k", "gguf_q6_k"}) {
    DYNAMIC_SECTION(fmt) {
      const at::Tensor w = at::randn({16, 512});
      const at::Tensor h = hessian_of(correlated_inputs(1024, 512));
      auto layer = make_layer(w, observed_weight_cfg(fmt, {}, ScaleMode::kLearnable));
      const auto fq = layer->weight_quantizer();
      const QuantSpec spec = fq->config().spec;
      // The scales as they start (ggml's search on w), copied: GPTQ must keep them.
      fake_quant::KQuantLearned before = fq->kquant_learned();
      for (at::Tensor* t : {&before.d, &before.dmin, &before.sub_scale, &before.sub_min})
        if (t->defined()) *t = t->detach().clone();
      // The reference rounds with the learned fake quant's own forward (tensor ops), an
      // implementation independent of GPTQ's per-element rounder.
      const at::Tensor ref = reference_gptq(
          w, h, 0.01,
          [&](const at::Tensor& x) {
            return fake_quant::fake_quant_kquant_learned(x, before, spec);
          },
          at::arange(512, at::kLong));
      transforms::GptqConfig cfg;
      cfg.act_order = false;
      const auto r = transforms::gptq_layer(*layer, h, cfg);
      const at::Tensor got = layer->effective_weight();
      const double agree = got.to(at::kDouble).eq(ref).to(at::kDouble).mean().item<double>();
      INFO("agreement " << agree << ", gptq error " << r.gptq_error << ", rtn " << r.rtn_error);
      CHECK(agree >= 0.98);
      CHECK(r.gptq_error < r.rtn_error);
      CHECK(at::equal(fq->kquant_learned().sub_scale, before.sub_scale));
      CHECK(at::equal(fq->kquant_learned().d, before.d));
      // What trains and what exports: the forward, the stored blocks and GPTQ's values agree.
      CHECK(test::bit_equal(fake_quant::fake_quant_kquant_learned(layer->weight(), before, spec),
                            got));
    }
  }
}

TEST_CASE("gptq refuses what it cannot round, with what to change", "[gptq]") {
  const at::Tensor w = at::randn({8, 256});
  const at::Tensor h = at::eye(256);
  auto refuse = [&](const FakeQuantizerConfig& c, const std::string& what) {
    auto layer = make_layer(w, c);
    CHECK_THROWS_WITH(transforms::gptq_layer(*layer, h, {}, "model.layers.0.mlp.up_proj"),
                      Catch::Contains(what) && Catch::Contains("model.layers.0.mlp.up_proj"));
  };
  refuse(observed_weight_cfg("gguf_q4_k", {}), "quant.scale_mode: learnable");
  refuse(observed_weight_cfg("int4", Granularity::per_group(32), ScaleMode::kLearnable),
         "learnable");
  FakeQuantizerConfig pct = observed_weight_cfg("int4", Granularity::per_group(32));
  pct.range.method = fake_quant::RangeMethod::kPercentile;
  refuse(pct, "min-max");
  FakeQuantizerConfig delayed = observed_weight_cfg("int4", Granularity::per_group(32));
  delayed.delay_steps = 5;
  refuse(delayed, "no active weight quantizer");

  auto layer = make_layer(w, observed_weight_cfg("int4", Granularity::per_group(32)));
  CHECK_THROWS_WITH(transforms::gptq_layer(*layer, at::eye(128), {}),
                    Catch::Contains("(256, 256)"));
  transforms::GptqConfig bad;
  bad.damp = -1;
  CHECK_THROWS_WITH(transforms::gptq_layer(*layer, h, bad), Catch::Contains("damp"));
  bad = {};
  bad.block_size = 0;
  CHECK_THROWS_WITH(transforms::gptq_layer(*layer, h, bad), Catch::Contains("block_size"));
  CHECK_THROWS_WITH(transforms::gptq_layer(*layer, at::full({256, 256}, NAN), {}),
                    Catch::Contains("NaN"));
}

TEST_CASE("gptq_llama rounds every decoder linear in sequence, on packed calibration data",
          "[gptq]") {
  torch::manual_seed(5);
  models::LlamaForCausalLM model(test::tiny_llama_config(97, /*qkv_bias=*/true));
  transforms::PrepareConfig pc;
  pc.layer.weight = observed_weight_cfg("int4", Granularity::per_group(32));
  transforms::prepare(model, pc);
  // Two batches of packed rows; the second row of the last batch ends in padding (segment -1).
  std::vector<transforms::CalibrationBatch> batches;
  for (int b = 0; b < 2; ++b) {
    transforms::CalibrationBatch c;
    c.tokens = at::randint(0, 97, {2, 48}, at::kLong);
    at::Tensor seg = at::zeros({2, 48}, at::kLong);
    seg.slice(1, 20).fill_(1);
    at::Tensor pos = at::arange(48, at::kLong).repeat({2, 1});
    pos.slice(1, 20) -= 20;
    if (b == 1) seg[1].slice(0, 40).fill_(-1);
    c.packed = models::PackedInputs{pos, seg};
    batches.push_back(c);
  }
  std::vector<std::string> lines;
  model.train();
  const auto reports =
      transforms::gptq_llama(model, batches, {}, [&](const std::string& l) { lines.push_back(l); });
  CHECK(model.is_training());  // mode restored
  REQUIRE(reports.size() == 14);
  CHECK(lines.size() == 2);
  // Rounded in sequence: q/k/v, o, gate/up, down (the order inside a group is the calls').
  const std::vector<std::vector<std::string>> groups = {
      {"self_attn.k_proj", "self_attn.q_proj", "self_attn.v_proj"},
      {"self_attn.o_proj"},
      {"mlp.gate_proj", "mlp.up_proj"},
      {"mlp.down_proj"}};
  double rtn = 0, gptq = 0;
  size_t i = 0;
  for (int layer = 0; layer < 2; ++layer) {
    for (const auto& group : groups) {
      std::vector<std::string> got;
      for (size_t a = 0; a < group.size(); ++a, ++i) {
        got.push_back(reports[i].name);
        CHECK(reports[i].rows == 4 * 48 - 8);  // the padding is not calibration data
        rtn += reports[i].rtn_error;
        gptq += reports[i].gptq_error;
      }
      std::sort(got.begin(), got.end());
      std::vector<std::string> want;
      for (const auto& n : group) want.push_back("model.layers." + std::to_string(layer) + "." + n);
      CHECK(got == want);
    }
  }
  CHECK(gptq < rtn);
  // No hooks left behind: a forward runs and changes no report.
  model.eval();
  CHECK(at::isfinite(model.forward(batches[0].tokens)).all().item<bool>());

  // Calibration that is all padding is an error, not a silent round to nearest.
  std::vector<transforms::CalibrationBatch> padding = {batches[0]};
  padding[0].packed->segments = at::full({2, 48}, -1, at::kLong);
  CHECK_THROWS_WITH(transforms::gptq_llama(model, padding, {}),
                    Catch::Contains("saw no calibration tokens"));
}

TEST_CASE("gptq checks only what it rounds: the decoder layers, not lm_head", "[gptq]") {
  torch::manual_seed(6);
  models::LlamaForCausalLM model(test::tiny_llama_config(97, /*qkv_bias=*/false));
  transforms::PrepareConfig pc;
  pc.layer.weight = observed_weight_cfg("int4", Granularity::per_group(32));
  pc.exclude = {"lm_head", "*embed*"};
  transforms::prepare(model, pc);
  transforms::PrepareConfig head;  // lm_head with scales GPTQ cannot take (LSQ)
  head.include = {"lm_head"};
  head.exclude = {};
  head.layer.weight =
      observed_weight_cfg("int4", Granularity::per_group(32), ScaleMode::kLearnable);
  transforms::prepare(model, head);
  CHECK_NOTHROW(transforms::check_gptq_model(model));
  // A decoder layer GPTQ cannot take is refused by name before any work.
  models::LlamaForCausalLM bad(test::tiny_llama_config(97, false));
  transforms::PrepareConfig lsq = pc;
  lsq.layer.weight = observed_weight_cfg("int4", Granularity::per_group(32), ScaleMode::kLearnable);
  transforms::prepare(bad, lsq);
  CHECK_THROWS_WITH(transforms::check_gptq_model(bad),
                    Catch::Contains("model.layers.0.") && Catch::Contains("learnable"));
}
