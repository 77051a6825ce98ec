// The memory plan (recipes/memory_plan.h) against a real build: the state it says a rank owns must
// equal the bytes of the tensors the built model, its gradients and AdamW hold, for every method.
#include <catch2/catch.hpp>

#include "qat/nf4/nf4_linear.h"
#include "recipes/memory_plan.h"
#include "tests/support/helpers.h"
#include "tests/trainers/trainer_test_util.h"
#include "trainers/optimizer.h"

namespace {

int64_t bytes_of(const at::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}

struct Owned {
  int64_t trainable = 0, frozen = 0, packed = 0, gradients = 0, moments = 0;
};

// Counts a built model's tensors by kind, then takes one AdamW step and counts what it made.
Owned count_real(qat::models::LlamaForCausalLM& model) {
  Owned o;
  std::vector<std::string> nf4_prefixes;
  for (const auto& m : model.named_modules()) {
    if (!dynamic_cast<qat::nf4::NF4Linear*>(m.value().get())) continue;
    nf4_prefixes.push_back(m.key() + ".");
    for (const auto& b : m.value()->named_buffers(/*recurse=*/false))
      o.packed += bytes_of(b.value());
  }
  auto in_nf4 = [&](const std::string& name) {
    for (const auto& p : nf4_prefixes)
      if (name.rfind(p, 0) == 0) return true;
    return false;
  };
  std::vector<qat::train::NamedParam> params;
  for (const auto& p : model.named_parameters()) {
    if (p.value().requires_grad()) {
      o.trainable += bytes_of(p.value());
      params.push_back({p.key(), p.value()});
    } else {
      o.frozen += bytes_of(p.value());
    }
  }
  for (const auto& b : model.named_buffers())
    if (!in_nf4(b.key())) o.frozen += bytes_of(b.value());
  qat::train::AdamW opt(params, {});
  const at::Tensor ids = at::randint(0, qat::test::kTinyVocab, {2, 8}, at::kLong);
  model.forward(ids).pow(2).mean().backward();
  opt.step(1e-3);
  for (const auto& p : params) o.gradients += bytes_of(p.param.grad());
  for (const auto& [name, t] : opt.state_dict())
    if (name != "step") o.moments += bytes_of(t);
  return o;
}

}  // namespace

TEST_CASE("the memory plan's owned state equals a real build's tensors for every method",
          "[plan]") {
  const std::vector<std::string> overrides =
      GENERATE(std::vector<std::string>{"method=full"}, std::vector<std::string>{"method=qat"},
               std::vector<std::string>{"method=qat", "quant.weight=gguf_q4_1",
                                        "quant.scale_mode=learnable"},
               std::vector<std::string>{"method=lora"}, std::vector<std::string>{"method=qat_lora"},
               std::vector<std::string>{"method=qlora"},
               std::vector<std::string>{"method=qlora", "nf4.double_quant=false", "lora.r=4"});
  CAPTURE(overrides);
  const std::string dir = qat::test::temp_dir();
  const auto cfg = qat::test::tiny_config(dir, overrides);
  auto model = qat::test::tiny_model(cfg);
  const Owned real = count_real(*model);
  const qat::recipes::MemoryPlan plan =
      qat::recipes::plan_memory(qat::test::tiny_llama_config(qat::test::kTinyVocab, false), cfg);
  CHECK(plan.trainable == real.trainable);
  CHECK(plan.frozen == real.frozen);
  CHECK(plan.packed == real.packed);
  CHECK(plan.gradients == real.gradients);
  CHECK(plan.optimizer == real.moments);
  CHECK(plan.owned() > 0);
  CHECK((cfg.method == qat::recipes::Method::kQlora) == (real.packed > 0));
  // Data parallel: the same state on every rank, plus the all-reduce buckets.
  const auto two =
      qat::recipes::plan_memory(qat::test::tiny_llama_config(qat::test::kTinyVocab, false), cfg, 2);
  CHECK(two.owned() == plan.owned());
  CHECK(two.grad_buckets == real.trainable);
}

TEST_CASE("the memory plan leaves the random generator as it found it", "[plan]") {
  const auto cfg = qat::test::tiny_config(qat::test::temp_dir(), {"method=qlora"});
  at::manual_seed(11);
  const at::Tensor expected = at::rand({4});
  at::manual_seed(11);
  (void)qat::recipes::plan_memory(qat::test::tiny_llama_config(qat::test::kTinyVocab, false), cfg);
  CHECK(at::equal(at::rand({4}), expected));
}

TEST_CASE("the memory plan's table names each part and whether it is counted or estimated",
          "[plan]") {
  auto cfg = qat::test::tiny_config(qat::test::temp_dir(), {"method=qlora"});
  const auto plan =
      qat::recipes::plan_memory(qat::test::tiny_llama_config(qat::test::kTinyVocab, false), cfg);
  const std::string text = plan.table();
  CHECK_THAT(text, Catch::Contains("NF4 bases"));
  CHECK_THAT(text, Catch::Contains("counted (packed bytes)"));
  CHECK_THAT(text, Catch::Contains("activations"));
  CHECK_THAT(text, Catch::Contains("estimated"));
  CHECK_THAT(plan.summary(), Catch::Contains("per rank"));
  cfg.train.activation_checkpointing = true;
  const auto ckpt =
      qat::recipes::plan_memory(qat::test::tiny_llama_config(qat::test::kTinyVocab, false), cfg);
  CHECK(ckpt.activations < plan.activations);
  CHECK(ckpt.owned() == plan.owned());
}
