// LoRA over dense, fake-quant and NF4 bases against an independent float64 computation, PEFT's
// initialisation and names, freezing, merge, and re-quantization to NF4.
#include <catch2/catch.hpp>

#include "qat/lora/lora.h"
#include "qat/models/llama.h"
#include "qat/nf4/nf4_linear.h"
#include "qat/nn/fake_quant_linear.h"
#include "qat/transforms/prepare.h"
#include "tests/qat/models/tiny_llama.h"
#include "tests/support/helpers.h"

using qat::lora::LoraConfig;
using qat::lora::LoraLinear;

namespace {

std::shared_ptr<qat::nn::LinearBase> make_base(const std::string& kind, int64_t in, int64_t out) {
  torch::manual_seed(3);
  auto dense = std::make_shared<qat::nn::Linear>(in, out, /*bias=*/true);
  if (kind == "dense") return dense;
  if (kind == "nf4") return qat::nf4::NF4Linear::from_linear(*dense);
  qat::nn::FakeQuantLinearConfig fq;
  qat::fake_quant::FakeQuantizerConfig w;
  w.spec = qat::scheme::QuantSpec::from_name("int4").with(qat::scheme::Granularity::per_group(32));
  fq.weight = w;
  return std::make_shared<qat::nn::FakeQuantLinear>(*dense, fq);
}

}  // namespace

TEST_CASE("LoRA forward and backward equal a float64 computation over each base", "[lora]") {
  const std::string kind = GENERATE("dense", "fake_quant", "nf4");
  const bool rslora = GENERATE(false, true);
  CAPTURE(kind, rslora);
  const int64_t in = 64, out = 48;
  auto base = make_base(kind, in, out);
  LoraConfig cfg;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.use_rslora = rslora;
  LoraLinear layer(base, cfg);
  CHECK(layer.scaling() == (rslora ? 8.0 / 2.0 : 2.0));
  {  // a trained-looking B (PEFT starts it at zero)
    torch::NoGradGuard no_grad;
    const_cast<at::Tensor&>(layer.lora_B()).copy_(qat::test::randn({out, 4}, 5, 0.1));
  }
  for (auto& p : base->parameters()) p.set_requires_grad(false);
  const at::Tensor x = qat::test::randn({3, 5, in}, 6).requires_grad_(true);
  const at::Tensor y = layer.forward(x);

  // Reference: x W^T + b + s (x A^T) B^T in float64, W the base's deployed (dequantized) weight.
  const at::Tensor xd = x.detach().to(at::kDouble).requires_grad_(true);
  const at::Tensor ad = layer.lora_A().detach().to(at::kDouble).requires_grad_(true);
  const at::Tensor bd = layer.lora_B().detach().to(at::kDouble).requires_grad_(true);
  const at::Tensor w = base->effective_weight().to(at::kDouble);
  const at::Tensor yd = at::linear(xd, w, base->bias().to(at::kDouble)) +
                        at::linear(at::linear(xd, ad), bd) * layer.scaling();
  CHECK(at::allclose(y.to(at::kDouble), yd, 1e-5, 1e-5));

  const at::Tensor g = qat::test::randn(y.sizes().vec(), 7);
  y.backward(g);
  yd.backward(g.to(at::kDouble));
  CHECK(at::allclose(x.grad().to(at::kDouble), xd.grad(), 1e-5, 1e-5));
  CHECK(at::allclose(layer.lora_A().grad().to(at::kDouble), ad.grad(), 1e-4, 1e-5));
  CHECK(at::allclose(layer.lora_B().grad().to(at::kDouble), bd.grad(), 1e-4, 1e-5));
  for (const auto& p : base->parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("A fresh adapter follows PEFT's init and leaves the output unchanged", "[lora]") {
  auto base = make_base("dense", 100, 30);
  LoraConfig cfg;
  cfg.r = 8;
  LoraLinear layer(base, cfg);
  CHECK(layer.lora_A().sizes() == at::IntArrayRef{8, 100});
  CHECK(layer.lora_B().sizes() == at::IntArrayRef{30, 8});
  CHECK(at::equal(layer.lora_B(), at::zeros_like(layer.lora_B())));
  // kaiming_uniform(a = sqrt(5)) on fan_in 100: U(-0.1, 0.1), spread over most of the range
  CHECK(layer.lora_A().abs().max().item<float>() <= 0.1f);
  CHECK(layer.lora_A().abs().max().item<float>() > 0.09f);
  torch::NoGradGuard no_grad;
  const at::Tensor x = qat::test::randn({4, 100}, 1);
  CHECK(at::equal(layer.forward(x), base->forward(x)));

  cfg.adapter_dtype = at::kBFloat16;
  LoraLinear bf16(base, cfg);
  CHECK(bf16.lora_A().scalar_type() == at::kBFloat16);
  CHECK(bf16.forward(x).scalar_type() == at::kFloat);
}

TEST_CASE("apply_lora wraps the targets with PEFT names and freezes everything else", "[lora]") {
  const qat::models::LlamaConfig c = qat::test::tiny_llama_config(50, /*qkv_bias=*/false);
  torch::manual_seed(0);
  qat::models::LlamaForCausalLM model(c);
  LoraConfig cfg;
  cfg.r = 4;
  cfg.target_modules = {"q_proj", "v_proj"};
  const auto wrapped = qat::lora::apply_lora(model, cfg);
  CHECK(wrapped.size() == 4);
  const auto params = qat::lora::lora_parameters(model);
  REQUIRE(params.size() == 8);
  std::set<std::string> names;
  for (const auto& [n, t] : params) names.insert(n);
  CHECK(names.count("model.layers.0.self_attn.q_proj.lora_A.weight") == 1);
  CHECK(names.count("model.layers.1.self_attn.v_proj.lora_B.weight") == 1);
  CHECK(qat::models::state_dict(model).count("model.layers.0.self_attn.q_proj.base_layer.weight") ==
        1);
  for (const auto& p : model.named_parameters()) {
    CAPTURE(p.key());
    CHECK(p.value().requires_grad() == (names.count(p.key()) == 1));
  }
  cfg.target_modules = {"nothing_here"};
  CHECK_THROWS_WITH(qat::lora::apply_lora(model, cfg), Catch::Contains("no linear layer matched"));
  LoraConfig bad;
  bad.r = 0;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("r must be > 0"));
  bad.r = 4;
  bad.dropout = 1.0;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("dropout"));
}

TEST_CASE("Merging folds the adapter into the weight and re-quantizing to NF4 reports its error",
          "[lora][nf4]") {
  const std::string kind = GENERATE("dense", "fake_quant", "nf4");
  CAPTURE(kind);
  struct Holder : qat::nn::ModuleWithLinears {
    std::shared_ptr<qat::nn::LinearBase> proj;
  } holder;
  holder.proj = make_base(kind, 128, 64);
  holder.register_linear("proj", holder.proj);
  LoraConfig cfg;
  cfg.r = 8;
  cfg.target_modules = {"proj"};
  qat::lora::apply_lora(holder, cfg);
  auto* lora = dynamic_cast<LoraLinear*>(holder.proj.get());
  REQUIRE(lora != nullptr);
  {
    torch::NoGradGuard no_grad;
    const_cast<at::Tensor&>(lora->lora_B()).copy_(qat::test::randn({64, 8}, 9, 0.05));
  }
  torch::NoGradGuard no_grad;
  const at::Tensor x = qat::test::randn({6, 128}, 10);
  const at::Tensor before = holder.proj->forward(x);
  const at::Tensor merged_w = lora->effective_weight();

  CHECK(qat::lora::merge_lora(holder) == std::vector<std::string>{"proj"});
  REQUIRE(dynamic_cast<qat::nn::Linear*>(holder.proj.get()) != nullptr);
  CHECK(at::allclose(holder.proj->forward(x), before, 1e-5, 1e-5));
  CHECK(at::equal(holder.proj->effective_weight(), merged_w));

  // Back to NF4: the reported error is that of an independent quantize/dequantize of W.
  const auto report = qat::lora::merge_lora_to_nf4(holder);  // nothing left to merge
  CHECK(report.empty());
  qat::lora::apply_lora(holder, cfg);
  const at::Tensor w = holder.proj->effective_weight();
  const auto report2 = qat::lora::merge_lora_to_nf4(holder, 64, true);
  REQUIRE(report2.size() == 1);
  REQUIRE(dynamic_cast<qat::nf4::NF4Linear*>(holder.proj.get()) != nullptr);
  const at::Tensor wq =
      qat::nf4::NF4Tensor::quantize(w, qat::nf4::NF4Config{}).dequantize(at::kFloat);
  CHECK(report2[0].max_abs == Approx((w - wq).abs().max().item<double>()).epsilon(1e-6));
  CHECK(report2[0].rel_fro > 0.01);
  CHECK(report2[0].rel_fro < 0.2);
}

TEST_CASE("Activation checkpointing trains LoRA adapters over a frozen model exactly as without it",
          "[lora][models]") {
  const qat::models::LlamaConfig c = qat::test::tiny_llama_config(50, /*qkv_bias=*/false);
  auto build = [&](bool ckpt) {
    torch::manual_seed(21);
    auto m = std::make_shared<qat::models::LlamaForCausalLM>(c);
    LoraConfig cfg;
    cfg.r = 4;
    qat::lora::apply_lora(*m, cfg);
    torch::NoGradGuard no_grad;
    for (auto& [n, t] : qat::lora::lora_parameters(*m))
      t.normal_(0.0, 0.05);  // same seed, same values
    m->model().set_activation_checkpointing(ckpt);
    m->train();
    return m;
  };
  auto plain = build(false), ckpt = build(true);
  at::Generator gen = at::detail::createCPUGenerator(22);
  const at::Tensor ids = at::randint(0, 50, {2, 9}, gen, at::kLong);
  for (auto& m : {plain, ckpt}) {
    // The embedding is frozen, so the first layer's input needs no grad: the adapters must still
    // get theirs through the checkpointed layers.
    const at::Tensor logits = m->forward(ids);
    at::cross_entropy_loss(logits.reshape({-1, 50}), ids.reshape(-1)).backward();
  }
  const auto pa = qat::lora::lora_parameters(*plain), pb = qat::lora::lora_parameters(*ckpt);
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    REQUIRE(pb[i].second.grad().defined());
    CHECK(at::allclose(pa[i].second.grad(), pb[i].second.grad(), 1e-5, 1e-7));
  }
}
