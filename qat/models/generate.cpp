#include "qat/models/generate.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>

namespace qat::models {

void SamplingConfig::validate() const {
  TORCH_CHECK(temperature >= 0, "sampling: temperature must be >= 0 (0 = greedy), got ",
              temperature);
  TORCH_CHECK(top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got ", top_k);
  TORCH_CHECK(top_p > 0 && top_p <= 1, "sampling: top_p must be in (0, 1], got ", top_p);
}

int64_t sample_next(const at::Tensor& logits, const SamplingConfig& cfg, at::Generator& gen) {
  TORCH_CHECK(logits.dim() == 1, "sample_next: expected a (vocab,) row of logits, got ",
              logits.sizes());
  at::Tensor x = logits.to(at::kCPU, at::kFloat);
  if (cfg.temperature == 0.0) return x.argmax().item<int64_t>();

  x = x / cfg.temperature;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (cfg.top_k > 0 && cfg.top_k < x.size(0)) {
    // Keep every token whose logit reaches the k-th largest (ties at the boundary stay in).
    const at::Tensor kth = std::get<0>(x.topk(cfg.top_k)).min();
    x = x.masked_fill(x < kth, neg_inf);
  }
  if (cfg.top_p < 1.0) {
    // Sort descending and drop the tail once the mass before a token already reaches top_p;
    // the most likely token always stays.
    auto [sorted, order] = x.sort(/*dim=*/0, /*descending=*/true);
    const at::Tensor probs = sorted.softmax(0);
    const at::Tensor before = probs.cumsum(0) - probs;
    at::Tensor drop_sorted = before >= cfg.top_p;
    drop_sorted[0] = false;
    const at::Tensor drop = at::zeros_like(drop_sorted).scatter(0, order, drop_sorted);
    x = x.masked_fill(drop, neg_inf);
  }
  return at::multinomial(x.softmax(0), 1, /*replacement=*/false, gen).item<int64_t>();
}

namespace {

void check_prompt(const std::vector<int64_t>& prompt, int64_t vocab) {
  TORCH_CHECK(!prompt.empty(), "generate: the prompt has no tokens");
  for (int64_t id : prompt) {
    TORCH_CHECK(id >= 0 && id < vocab, "generate: prompt token id ", id,
                " is outside the vocabulary [0, ", vocab, ")");
  }
}

void check_config(const GenerateConfig& cfg) {
  TORCH_CHECK(cfg.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
  TORCH_CHECK(cfg.greedy_tokens >= 0, "generate: greedy_tokens must be >= 0");
  cfg.sampling.validate();
}

// Step i's sampling: greedy for the first cfg.greedy_tokens steps, then cfg.sampling.
const SamplingConfig& step_sampling(const GenerateConfig& cfg, int64_t i) {
  static const SamplingConfig greedy;
  return i < cfg.greedy_tokens ? greedy : cfg.sampling;
}

}  // namespace

std::vector<int64_t> generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt,
                              const GenerateConfig& cfg,
                              const std::function<bool(int64_t)>& on_token) {
  check_config(cfg);
  check_prompt(prompt, model.config().vocab_size);
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  at::Generator gen = at::detail::createCPUGenerator(cfg.sampling.seed);
  const int64_t total = static_cast<int64_t>(prompt.size()) + cfg.max_new_tokens;
  KVCache cache = model.make_cache(1, total);

  const at::Device device = model.model().embed_tokens()->weight.device();
  at::Tensor input = at::tensor(prompt, at::kLong).unsqueeze(0).to(device);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < cfg.max_new_tokens; ++i) {
    const at::Tensor logits = model.forward(input, &cache);  // (1, T, vocab)
    const int64_t next = sample_next(logits[0][-1], step_sampling(cfg, i), gen);
    out.push_back(next);
    const bool stop =
        std::find(cfg.stop_ids.begin(), cfg.stop_ids.end(), next) != cfg.stop_ids.end();
    if ((on_token && !on_token(next)) || stop) break;
    input = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(device));
  }
  if (was_training) model.train();
  return out;
}

std::vector<std::vector<int64_t>> generate_batch(LlamaForCausalLM& model,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const std::vector<uint64_t>& seeds,
                                                 const GenerateConfig& cfg) {
  check_config(cfg);
  TORCH_CHECK(!prompts.empty(), "generate_batch: no prompts");
  TORCH_CHECK(seeds.size() == prompts.size(), "generate_batch: ", prompts.size(), " prompts but ",
              seeds.size(), " seeds (one per prompt)");
  const size_t length = prompts[0].size();
  for (const auto& p : prompts) {
    check_prompt(p, model.config().vocab_size);
    TORCH_CHECK(p.size() == length, "generate_batch: prompts of ", length, " and ", p.size(),
                " tokens; every prompt must have the same length (no padding)");
  }
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const int64_t batch = static_cast<int64_t>(prompts.size());
  std::vector<at::Generator> gens;
  for (uint64_t s : seeds) gens.push_back(at::detail::createCPUGenerator(s));
  KVCache cache = model.make_cache(batch, static_cast<int64_t>(length) + cfg.max_new_tokens);

  const at::Device device = model.model().embed_tokens()->weight.device();
  std::vector<int64_t> flat;
  for (const auto& p : prompts) flat.insert(flat.end(), p.begin(), p.end());
  at::Tensor input = at::tensor(flat, at::kLong).view({batch, -1}).to(device);
  std::vector<std::vector<int64_t>> out(prompts.size());
  std::vector<char> done(prompts.size(), 0);
  int64_t running = batch;
  for (int64_t i = 0; i < cfg.max_new_tokens && running > 0; ++i) {
    const at::Tensor last = model.forward(input, &cache).select(1, -1).to(at::kCPU);  // (B, vocab)
    std::vector<int64_t> next(prompts.size(), 0);
    for (size_t r = 0; r < prompts.size(); ++r) {
      if (done[r])
        continue;  // an ended row still runs (the batch is dense); its tokens are dropped
      next[r] = sample_next(last[static_cast<int64_t>(r)], step_sampling(cfg, i), gens[r]);
      out[r].push_back(next[r]);
      if (std::find(cfg.stop_ids.begin(), cfg.stop_ids.end(), next[r]) != cfg.stop_ids.end()) {
        done[r] = 1;
        --running;
      }
    }
    input = at::tensor(next, at::kLong).view({batch, 1}).to(device);
  }
  if (was_training) model.train();
  return out;
}

}  // namespace qat::models
