// FakeQuantizerConfig::cache_frozen: a frozen weight with dynamic scales quantizes once and the
// result is reused until the weight changes; outputs and gradients equal the uncached path's bit
// for bit.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <catch2/catch.hpp>

#include "ops/quantize.h"
#include "qat/fake_quant/fake_quantizer.h"
#include "qat/lora/lora.h"
#include "qat/nn/fake_quant_linear.h"
#include "qat/nn/linear.h"
#include "tests/support/helpers.h"

using qat::fake_quant::FakeQuantizer;
using qat::fake_quant::FakeQuantizerConfig;
using qat::scheme::QuantSpec;

namespace {

FakeQuantizerConfig q4_0(bool cache) {
  FakeQuantizerConfig c;
  c.spec = QuantSpec::from_name("gguf_q4_0");
  c.cache_frozen = cache;
  return c;
}

at::Tensor uncached_fake_quant(const at::Tensor& w, const QuantSpec& spec) {
  return qat::ops::fake_quantize(w, spec, qat::ops::choose_qparams(w, spec), false).y;
}

}  // namespace

TEST_CASE("a frozen weight's fake quant is kept until the weight changes", "[fake_quant][cache]") {
  at::Tensor w = qat::test::randn({8, 64}, 31);  // no gradient: frozen
  FakeQuantizer fq(q4_0(true), w);
  fq->train();
  const at::Tensor y1 = fq->forward(w);
  REQUIRE(qat::test::bit_equal(y1, uncached_fake_quant(w, fq->config().spec)));
  const at::Tensor y2 = fq->forward(w);
  CHECK(y2.data_ptr() == y1.data_ptr());  // reused, not recomputed
  CHECK(fq->step() == 2);                 // the step still counts every training forward

  {  // an in-place change (an optimizer step, a checkpoint load) bumps the version
    torch::NoGradGuard no_grad;
    w.mul_(1.5);
  }
  const at::Tensor y3 = fq->forward(w);
  CHECK(y3.data_ptr() != y1.data_ptr());
  CHECK(qat::test::bit_equal(y3, uncached_fake_quant(w, fq->config().spec)));

  // set_data (a device or dtype move) swaps the storage under the same tensor
  w.set_data(qat::test::randn({8, 64}, 32));
  CHECK(qat::test::bit_equal(fq->forward(w), uncached_fake_quant(w, fq->config().spec)));

  // another tensor of the same shape is not the cached weight
  const at::Tensor other = qat::test::randn({8, 64}, 33);
  CHECK(qat::test::bit_equal(fq->forward(other), uncached_fake_quant(other, fq->config().spec)));

  fq->set_enabled(false);  // disabled: the identity, whatever is cached
  CHECK(fq->forward(w).data_ptr() == w.data_ptr());
}

TEST_CASE("trainable weights, activations and cache_frozen=false are quantized every call",
          "[fake_quant][cache]") {
  const at::Tensor w = qat::test::randn({8, 64}, 34).requires_grad_();
  FakeQuantizer trained(q4_0(true), w);
  const at::Tensor a = trained->forward(w);
  const at::Tensor b = trained->forward(w);
  CHECK(a.requires_grad());
  CHECK(a.data_ptr() != b.data_ptr());

  const at::Tensor frozen = w.detach();
  FakeQuantizer off(q4_0(false), frozen);
  CHECK(off->forward(frozen).data_ptr() != off->forward(frozen).data_ptr());
  FakeQuantizer on(q4_0(true), frozen);
  CHECK(on->forward(frozen).data_ptr() == on->forward(frozen).data_ptr());
  on->set_cache_frozen(false);
  CHECK(on->forward(frozen).data_ptr() != on->forward(frozen).data_ptr());

  FakeQuantizer act(q4_0(true));  // no `like`: an activation quantizer
  CHECK(act->forward(frozen).data_ptr() != act->forward(frozen).data_ptr());
}

TEST_CASE("QAT + LoRA over a cached frozen base trains bit for bit as without the cache",
          "[fake_quant][cache][lora]") {
  qat::lora::LoraConfig lc;
  lc.r = 4;
  auto run = [&](bool cache) {
    at::manual_seed(7);
    auto dense = std::make_shared<qat::nn::Linear>(64, 32, false);
    qat::nn::FakeQuantLinearConfig fc;
    fc.weight = q4_0(cache);
    auto base = std::make_shared<qat::nn::FakeQuantLinear>(*dense, fc);
    base->weight().set_requires_grad(false);
    qat::lora::LoraLinear layer(base, lc);
    std::vector<at::Tensor> out;
    for (int step = 0; step < 3; ++step) {
      const at::Tensor x = qat::test::randn({5, 64}, 40 + step).requires_grad_();
      const at::Tensor loss = layer.forward(x).pow(2).sum();
      for (auto& p : layer.parameters()) p.mutable_grad() = at::Tensor();
      loss.backward();
      out.push_back(loss.detach());
      out.push_back(x.grad());
      torch::NoGradGuard no_grad;
      for (auto& p : layer.parameters()) {
        if (!p.requires_grad()) continue;
        out.push_back(p.grad().clone());
        p.sub_(p.grad() * 1e-2);
      }
    }
    return out;
  };
  const auto cached = run(true), plain = run(false);
  REQUIRE(cached.size() == plain.size());
  for (size_t i = 0; i < cached.size(); ++i) CHECK(qat::test::bit_equal(cached[i], plain[i]));
}
