// Streaming load (qat/models/loader.h): a model filled one tensor at a time, each linear handed to
// a visitor as soon as its weights are in. With transforms::nf4_swapper it must equal loading the
// whole model and then prepare_nf4, bit for bit, while a swapped dense layer is freed before the
// next is read and the layers not yet reached hold no memory.
#include <ATen/ATen.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qat/io/remove_tree.h"
#include "qat/io/safetensors_torch.h"
#include "qat/models/loader.h"
#include "qat/models/pretrained.h"
#include "qat/nf4/nf4_linear.h"
#include "qat/transforms/prepare.h"
#include "tests/qat/models/tiny_llama.h"
#include "tests/support/helpers.h"

namespace {

using qat::models::LlamaForCausalLM;

// A HF directory holding `tensors` and the config.json of `cfg`.
std::string write_hf_dir(const std::string& root, const qat::models::LlamaConfig& cfg,
                         const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  static int count = 0;
  const std::string dir = root + "/hf" + std::to_string(count++);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << cfg.to_hf_json().dump(2);
  qat::io::save_safetensors(dir + "/model.safetensors", tensors);
  return dir;
}

// A tiny random model's tensors, in bf16 as checkpoints usually are; with `head_copy`, a tied
// model's file also carries lm_head.weight (as transformers may write it).
std::vector<std::pair<std::string, at::Tensor>> tiny_tensors(const qat::models::LlamaConfig& cfg,
                                                             bool head_copy = false) {
  at::manual_seed(5);
  LlamaForCausalLM model(cfg);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, t] : qat::models::state_dict(model)) {
    out.emplace_back(name, (t * 3).to(at::kBFloat16));
    if (head_copy && name == "model.embed_tokens.weight")
      out.emplace_back("lm_head.weight", out.back().second.clone());
  }
  return out;
}

qat::transforms::PrepareNf4Config nf4_rules() {
  qat::transforms::PrepareNf4Config nc;
  nc.layer.blocksize = 64;
  nc.layer.double_quant = true;
  return nc;
}

void require_same_state(LlamaForCausalLM& a, LlamaForCausalLM& b) {
  const auto sa = qat::models::state_dict(a), sb = qat::models::state_dict(b);
  REQUIRE(sa.size() == sb.size());
  for (const auto& [name, t] : sa) {
    CAPTURE(name);
    REQUIRE(sb.count(name));
    CHECK(qat::test::bit_equal(t, sb.at(name)));
  }
}

}  // namespace

TEST_CASE("a streamed NF4 load equals load then prepare_nf4, one dense layer at a time",
          "[models][stream]") {
  const bool tied = GENERATE(false, true);
  CAPTURE(tied);
  auto cfg = qat::test::tiny_llama_config(96, /*qkv_bias=*/true, tied);
  cfg.o_bias = true;  // Llama's attention_bias: config.json cannot say q/k/v only
  const std::string root = qat::test::temp_dir();
  const std::string dir = write_hf_dir(root, cfg, tiny_tensors(cfg, /*head_copy=*/tied));

  auto eager = qat::models::load_hf_model(dir);
  const std::vector<std::string> eager_swapped = qat::transforms::prepare_nf4(*eager, nf4_rules());

  std::vector<std::string> swapped;
  const qat::nn::SlotVisitor swap = qat::transforms::nf4_swapper(nf4_rules(), &swapped);
  std::vector<std::weak_ptr<qat::nn::LinearBase>> freed;  // layers swapped for NF4 so far
  int64_t visits = 0;
  const qat::nn::SlotVisitor watch = [&](qat::nn::ModuleWithLinears& parent,
                                         const std::string& slot, const std::string& full,
                                         const std::shared_ptr<qat::nn::LinearBase>& layer) {
    CAPTURE(full);
    ++visits;
    CHECK_FALSE(layer->effective_weight().is_meta());  // handed over loaded
    // Every layer swapped before is gone (nothing kept its dense weights) ...
    for (const auto& w : freed) CHECK(w.expired());
    // ... and the parent's other projections are not loaded yet, or NF4 already (buffers).
    for (const auto& p : parent.named_parameters()) {
      if (!p.value().is_meta()) CHECK(p.key().rfind(slot + ".", 0) == 0);
    }
    const size_t before = swapped.size();
    swap(parent, slot, full, layer);
    if (swapped.size() > before) freed.push_back(layer);
  };
  auto streamed = qat::models::load_hf_model(dir, {}, watch);
  CHECK(swapped == eager_swapped);
  CHECK(visits == (tied ? 14 : 15));  // 7 projections x 2 layers (+ the untied head)
  for (const auto& w : freed) CHECK(w.expired());
  require_same_state(*eager, *streamed);
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::randint(0, 96, {2, 9}, at::kLong);
  CHECK(qat::test::bit_equal(eager->forward(ids), streamed->forward(ids)));
  qat::io::remove_tree(root);
}

TEST_CASE("a streamed load names what the checkpoint lacks, misshapes or adds",
          "[models][stream]") {
  const auto cfg = qat::test::tiny_llama_config(96, /*qkv_bias=*/false);
  const std::string root = qat::test::temp_dir();
  std::vector<std::string> swapped;
  const qat::nn::SlotVisitor swap = qat::transforms::nf4_swapper(nf4_rules(), &swapped);
  auto with =
      [&](const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& change) {
        auto tensors = tiny_tensors(cfg);
        change(tensors);
        const std::string dir = write_hf_dir(root, cfg, tensors);
        return [dir, &swap] { qat::models::load_hf_model(dir, {}, swap); };
      };
  const std::string up = "model.layers.1.mlp.up_proj.weight";
  CHECK_THROWS_WITH(
      with([&](auto& t) {
        t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& e) { return e.first == up; }),
                t.end());
      })(),
      Catch::Contains("lacks 1 tensor(s) the model needs: " + up));
  CHECK_THROWS_WITH(
      with([&](auto& t) {
        for (auto& e : t)
          if (e.first == up) e.second = e.second.narrow(0, 0, 10);
      })(),
      Catch::Contains("'" + up + "' has shape [10, 32] in the checkpoint but [64, 32]"));
  CHECK_THROWS_WITH(
      with([&](auto& t) { t.emplace_back("model.layers.2.mlp.up_proj.weight", t[0].second); })(),
      Catch::Contains("has 1 tensor(s) the model does not: model.layers.2.mlp.up_proj.weight"));
  qat::io::remove_tree(root);
}

TEST_CASE("SmolLM2's GGUF streamed into NF4 equals the whole load then prepare_nf4",
          "[models][stream][slow]") {
  const std::string gguf = qat::models::default_model_path();
  auto eager = qat::models::load_gguf_model(gguf);
  const auto eager_swapped = qat::transforms::prepare_nf4(*eager, nf4_rules());
  std::vector<std::string> swapped;
  auto streamed =
      qat::models::load_gguf_model(gguf, {}, qat::transforms::nf4_swapper(nf4_rules(), &swapped));
  CHECK(swapped == eager_swapped);
  CHECK(swapped.size() == 210);
  require_same_state(*eager, *streamed);
}
