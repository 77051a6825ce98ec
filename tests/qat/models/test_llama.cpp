// The decoder's own invariants: incremental decoding equals a full forward, activation
// checkpointing changes no gradient, names follow transformers, configs are validated, sampling
// keeps what top-k/top-p say. Logits against transformers are in test_llama_hf.cpp.
#include <algorithm>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "qat/models/generate.h"
#include "qat/models/llama.h"
#include "qat/transforms/prepare.h"
#include "tests/qat/models/tiny_llama.h"
#include "tests/support/helpers.h"

using qat::models::LlamaConfig;
using qat::models::LlamaForCausalLM;

namespace {

LlamaConfig tiny_config(bool tied = false, int64_t window = 0) {
  return qat::test::tiny_llama_config(97, /*qkv_bias=*/true, tied, window);
}

at::Tensor random_ids(int64_t b, int64_t t, uint64_t seed, int64_t vocab) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randint(0, vocab, {b, t}, gen, at::kLong);
}

}  // namespace

TEST_CASE("Llama module names follow transformers", "[models]") {
  torch::manual_seed(0);
  LlamaForCausalLM model(tiny_config());
  auto sd = qat::models::state_dict(model);
  for (const char* name :
       {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.q_proj.bias", "model.layers.1.self_attn.o_proj.weight",
        "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.down_proj.weight",
        "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
        "model.norm.weight", "lm_head.weight"}) {
    CAPTURE(name);
    CHECK(sd.count(name) == 1);
  }
  CHECK(sd.count("model.layers.0.self_attn.o_proj.bias") == 0);
  int64_t numel = 0;
  for (const auto& [name, t] : sd) numel += t.numel();
  CHECK(numel == model.config().num_parameters());

  LlamaForCausalLM tied(tiny_config(/*tied=*/true));
  CHECK(qat::models::state_dict(tied).count("lm_head.weight") == 0);
  CHECK(tied.lm_head() == nullptr);
}

TEST_CASE("Decoding with the KV cache equals the full forward", "[models]") {
  const int64_t window = GENERATE(0, 5);
  CAPTURE(window);
  torch::manual_seed(1);
  LlamaForCausalLM model(tiny_config(false, window));
  model.eval();
  torch::NoGradGuard no_grad;
  const at::Tensor ids = random_ids(2, 13, 3, 97);
  const at::Tensor full = model.forward(ids);

  // Prefill 6 tokens, then a chunk of 3, then one at a time: every path through the cache.
  auto cache = model.make_cache(2, 16);
  std::vector<at::Tensor> parts{model.forward(ids.narrow(1, 0, 6), &cache),
                                model.forward(ids.narrow(1, 6, 3), &cache)};
  for (int64_t t = 9; t < 13; ++t) parts.push_back(model.forward(ids.narrow(1, t, 1), &cache));
  const at::Tensor incremental = at::cat(parts, 1);
  CHECK(cache.length == 13);
  CHECK(at::allclose(incremental, full, 1e-5, 1e-5));

  auto small = model.make_cache(2, 4);
  model.forward(ids.narrow(1, 0, 4), &small);
  CHECK_THROWS_WITH(model.forward(ids.narrow(1, 4, 1), &small),
                    Catch::Contains("KV cache is full"));
}

TEST_CASE("A sliding window hides keys older than the window", "[models]") {
  torch::manual_seed(2);
  LlamaForCausalLM windowed(tiny_config(false, 4));
  LlamaForCausalLM full(tiny_config(false, 0));
  qat::models::load_state_dict(full, qat::models::state_dict(windowed));
  torch::NoGradGuard no_grad;
  const at::Tensor ids = random_ids(1, 10, 4, 97);
  const at::Tensor a = windowed.forward(ids), b = full.forward(ids);
  // Within the first window the two agree; later positions differ.
  CHECK(at::allclose(a.narrow(1, 0, 4), b.narrow(1, 0, 4), 1e-6, 1e-6));
  CHECK_FALSE(at::allclose(a.narrow(1, 4, 6), b.narrow(1, 4, 6), 1e-3, 1e-3));
  // Changing a token more than a window back leaves the last logits unchanged.
  at::Tensor ids2 = ids.clone();
  ids2[0][2] = (ids[0][2].item<int64_t>() + 1) % 97;
  CHECK(at::allclose(windowed.forward(ids2).select(1, 9), a.select(1, 9), 1e-6, 1e-6));
}

TEST_CASE("Activation checkpointing gives the same loss and gradients", "[models]") {
  const bool quantized = GENERATE(false, true);
  CAPTURE(quantized);
  auto build = [&] {
    torch::manual_seed(5);
    auto m = std::make_shared<LlamaForCausalLM>(tiny_config());
    if (quantized) {
      qat::transforms::PrepareConfig pc;
      qat::fake_quant::FakeQuantizerConfig w;
      w.spec =
          qat::scheme::QuantSpec::from_name("int4").with(qat::scheme::Granularity::per_group(16));
      w.delay_steps = 1;                       // quantization switches on at the second step
      qat::fake_quant::FakeQuantizerConfig a;  // static per-tensor int8: a running observer
      a.spec =
          qat::scheme::QuantSpec::from_name("int8").with(qat::scheme::Granularity::per_tensor());
      a.scale_mode = qat::fake_quant::ScaleMode::kStatic;
      pc.layer.weight = w;
      pc.layer.activation = a;
      qat::transforms::prepare(*m, pc);
    }
    m->train();
    return m;
  };
  auto plain = build();
  auto ckpt = build();
  ckpt->model().set_activation_checkpointing(true);
  const at::Tensor ids = random_ids(2, 9, 6, 97);
  for (int step = 0; step < 3; ++step) {  // observers and counters must advance once per step
    std::vector<at::Tensor> losses;
    for (auto& m : {plain, ckpt}) {
      m->zero_grad();
      const at::Tensor logits = m->forward(ids);
      const at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, 97}), ids.reshape(-1));
      loss.backward();
      losses.push_back(loss.detach());
    }
    CHECK(losses[0].item<float>() == losses[1].item<float>());
    const auto pa = plain->named_parameters(), pb = ckpt->named_parameters();
    for (const auto& item : pa) {
      CAPTURE(step, item.key());
      REQUIRE(item.value().grad().defined());
      CHECK(at::allclose(item.value().grad(), pb[item.key()].grad(), 1e-5, 1e-6));
    }
    const auto ba = plain->named_buffers(), bb = ckpt->named_buffers();
    for (const auto& item : ba) {
      CAPTURE(step, item.key());
      CHECK(at::equal(item.value(), bb[item.key()]));
    }
  }
}

TEST_CASE("Model configs from config.json are checked", "[models]") {
  using nlohmann::json;
  json ok = {{"model_type", "llama"},
             {"vocab_size", 10},
             {"hidden_size", 8},
             {"intermediate_size", 16},
             {"num_hidden_layers", 1},
             {"num_attention_heads", 2},
             {"num_key_value_heads", 1},
             {"rope_parameters", {{"rope_theta", 500.0}, {"rope_type", "default"}}}};
  const LlamaConfig c = LlamaConfig::from_hf_json(ok);
  CHECK(c.head_dim == 4);
  CHECK(c.rope_theta == 500.0);
  CHECK(LlamaConfig::from_hf_json(c.to_hf_json()).to_hf_json() == c.to_hf_json());

  auto with = [&](const char* key, json value) {
    json j = ok;
    j[key] = value;
    return j;
  };
  CHECK_THROWS_WITH(LlamaConfig::from_hf_json(with("model_type", "gpt2")),
                    Catch::Contains("not supported"));
  CHECK_THROWS_WITH(LlamaConfig::from_hf_json(with("num_key_value_heads", 3)),
                    Catch::Contains("multiple of num_key_value_heads"));
  CHECK_THROWS_WITH(LlamaConfig::from_hf_json(with("hidden_size", "8")),
                    Catch::Contains("must be an integer"));
  CHECK_THROWS_WITH(LlamaConfig::from_hf_json(with("hidden_act", "gelu")),
                    Catch::Contains("hidden_act"));
  CHECK_THROWS_WITH(LlamaConfig::from_hf_json(with("rope_parameters", {{"rope_type", "yarn"}})),
                    Catch::Contains("rope_type 'yarn'"));
  json missing = ok;
  missing.erase("vocab_size");
  CHECK_THROWS_WITH(LlamaConfig::from_hf_json(missing), Catch::Contains("'vocab_size' is missing"));
}

TEST_CASE("load_state_dict names what is missing, extra or misshapen", "[models]") {
  LlamaForCausalLM model(tiny_config());
  auto sd = qat::models::state_dict(model);
  std::map<std::string, at::Tensor> copy(sd.begin(), sd.end());
  copy.erase("model.norm.weight");
  CHECK_THROWS_WITH(qat::models::load_state_dict(model, copy),
                    Catch::Contains("model.norm.weight"));
  copy = sd;
  copy["model.layers.9.mlp.up_proj.weight"] = at::zeros({1});
  CHECK_THROWS_WITH(qat::models::load_state_dict(model, copy), Catch::Contains("layers.9"));
  copy = sd;
  copy["lm_head.weight"] = at::zeros({3, 3});
  CHECK_THROWS_WITH(qat::models::load_state_dict(model, copy), Catch::Contains("has shape"));
}

TEST_CASE("Sampling keeps exactly the tokens top-k and top-p allow", "[models]") {
  // logits whose softmax is (0.5, 0.25, 0.125, 0.0625, 0.0625)
  const at::Tensor logits = at::log(at::tensor({0.5f, 0.25f, 0.125f, 0.0625f, 0.0625f}));
  at::Generator gen = at::detail::createCPUGenerator(0);
  qat::models::SamplingConfig greedy;
  CHECK(qat::models::sample_next(logits, greedy, gen) == 0);

  auto seen = [&](qat::models::SamplingConfig cfg) {
    std::set<int64_t> s;
    for (int i = 0; i < 400; ++i) s.insert(qat::models::sample_next(logits, cfg, gen));
    return s;
  };
  qat::models::SamplingConfig k2;
  k2.temperature = 1.0;
  k2.top_k = 2;
  CHECK((seen(k2) == std::set<int64_t>{0, 1}));
  qat::models::SamplingConfig p;
  p.temperature = 1.0;
  p.top_p = 0.8;  // 0.5 + 0.25 < 0.8, so the third token is needed too
  CHECK((seen(p) == std::set<int64_t>{0, 1, 2}));
  p.top_p = 0.75;  // reached exactly by the first two
  CHECK((seen(p) == std::set<int64_t>{0, 1}));
  qat::models::SamplingConfig bad;
  bad.top_p = 0;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("top_p"));
}

TEST_CASE("Greedy generation equals argmax of full forwards", "[models]") {
  torch::manual_seed(9);
  LlamaForCausalLM model(tiny_config());
  model.eval();
  qat::models::GenerateConfig cfg;
  cfg.max_new_tokens = 6;
  const std::vector<int64_t> prompt{3, 14, 15, 92, 65};
  const auto out = qat::models::generate(model, prompt, cfg);
  REQUIRE(out.size() == 6);
  std::vector<int64_t> seq = prompt;
  torch::NoGradGuard no_grad;
  for (int64_t tok : out) {
    const at::Tensor logits = model.forward(at::tensor(seq, at::kLong).unsqueeze(0));
    CHECK(logits[0][-1].argmax().item<int64_t>() == tok);
    seq.push_back(tok);
  }
  cfg.stop_ids = {out[2]};
  CHECK(qat::models::generate(model, prompt, cfg).size() == 3);
}

TEST_CASE("Batched generation gives each row what generating it alone gives", "[models]") {
  torch::manual_seed(10);
  LlamaForCausalLM model(tiny_config());
  model.eval();
  qat::models::GenerateConfig cfg;
  cfg.max_new_tokens = 12;
  cfg.greedy_tokens = 2;
  cfg.sampling.temperature = 1.0;
  const std::vector<std::vector<int64_t>> prompts{{5, 17, 3}, {40, 2, 88}, {7, 7, 7}};
  const std::vector<uint64_t> seeds{11, 22, 33};
  const auto rows = qat::models::generate_batch(model, prompts, seeds, cfg);
  REQUIRE(rows.size() == 3);
  for (size_t r = 0; r < prompts.size(); ++r) {
    qat::models::GenerateConfig one = cfg;
    one.sampling.seed = seeds[r];
    CHECK(rows[r] == qat::models::generate(model, prompts[r], one));
  }
  // A row's tokens follow its prompt and seed, not its place in the batch.
  const auto swapped =
      qat::models::generate_batch(model, {prompts[2], prompts[0]}, {seeds[2], seeds[0]}, cfg);
  CHECK(swapped[0] == rows[2]);
  CHECK(swapped[1] == rows[0]);
  // The first greedy_tokens tokens are the argmax, whatever the seed.
  const auto other = qat::models::generate_batch(model, prompts, {1, 2, 3}, cfg);
  for (size_t r = 0; r < prompts.size(); ++r) {
    CHECK(std::vector<int64_t>(other[r].begin(), other[r].begin() + 2) ==
          std::vector<int64_t>(rows[r].begin(), rows[r].begin() + 2));
  }
  // A row ends at its first stop id (kept); the others run on.
  cfg.stop_ids = {rows[1][4]};
  const auto stopped = qat::models::generate_batch(model, prompts, seeds, cfg);
  const auto first_stop = std::find(rows[1].begin(), rows[1].end(), rows[1][4]) - rows[1].begin();
  CHECK(stopped[1] == std::vector<int64_t>(rows[1].begin(), rows[1].begin() + first_stop + 1));
  for (size_t r : {size_t{0}, size_t{2}}) {
    const auto at_stop = std::find(rows[r].begin(), rows[r].end(), rows[1][4]);
    const auto n = at_stop == rows[r].end() ? rows[r].size() : (at_stop - rows[r].begin()) + 1;
    CHECK(stopped[r] == std::vector<int64_t>(rows[r].begin(), rows[r].begin() + n));
  }

  CHECK_THROWS_WITH(qat::models::generate_batch(model, {{1, 2}, {3}}, {1, 2}, cfg),
                    Catch::Contains("same length"));
  CHECK_THROWS_WITH(qat::models::generate_batch(model, prompts, {1}, cfg),
                    Catch::Contains("one per prompt"));
  CHECK_THROWS_WITH(qat::models::generate_batch(model, {{1, 97}}, {1}, cfg),
                    Catch::Contains("outside the vocabulary"));
}

TEST_CASE("prepare and convert find the decoder's projections by their transformers names",
          "[models][prepare]") {
  torch::manual_seed(12);
  LlamaForCausalLM model(tiny_config());
  qat::transforms::PrepareConfig pc;
  qat::fake_quant::FakeQuantizerConfig w;
  w.spec = qat::scheme::QuantSpec::from_name("gguf_q4_0");
  pc.layer.weight = w;
  pc.include = {"*.self_attn.*", "*.mlp.*"};
  const auto swapped = qat::transforms::prepare(model, pc);
  CHECK(swapped.size() == 2 * 7);  // q, k, v, o, gate, up, down in each of 2 layers
  CHECK(std::find(swapped.begin(), swapped.end(), "model.layers.1.mlp.down_proj") != swapped.end());
  CHECK(std::find(swapped.begin(), swapped.end(), "lm_head") == swapped.end());

  model.eval();
  torch::NoGradGuard no_grad;
  const at::Tensor ids = random_ids(1, 7, 13, 97);
  const at::Tensor fake = model.forward(ids);
  CHECK(qat::transforms::convert(model).size() == swapped.size());
  CHECK(qat::test::bit_equal(model.forward(ids), fake));
}

TEST_CASE("Packed sequences attend only within their document", "[models]") {
  // Three documents packed into one row (the last one cut short) equal three separate forwards;
  // with a sliding window too.
  for (int64_t window : {0, 4}) {
    at::manual_seed(7);
    LlamaForCausalLM model(tiny_config(false, window));
    model.eval();
    torch::NoGradGuard no_grad;
    const std::vector<int64_t> lengths{5, 7, 4};
    const at::Tensor ids = random_ids(1, 16, 5, 97);
    std::vector<int64_t> pos, seg;
    for (size_t d = 0; d < lengths.size(); ++d)
      for (int64_t i = 0; i < lengths[d]; ++i) {
        pos.push_back(i);
        seg.push_back(static_cast<int64_t>(d));
      }
    qat::models::PackedInputs packed{at::tensor(pos, at::kLong).view({1, 16}),
                                     at::tensor(seg, at::kLong).view({1, 16})};
    const at::Tensor together = model.forward(ids, nullptr, std::nullopt, &packed);
    int64_t start = 0;
    for (int64_t len : lengths) {
      const at::Tensor alone = model.forward(ids.narrow(1, start, len));
      INFO("window " << window << " document at " << start);
      CHECK((together.narrow(1, start, len) - alone).abs().max().item<double>() < 1e-5);
      start += len;
    }
    // Without the packing information the later documents see the earlier ones.
    const at::Tensor crossed = model.forward(ids);
    CHECK((crossed.narrow(1, 5, 7) - together.narrow(1, 5, 7)).abs().max().item<double>() > 1e-3);
  }
}
