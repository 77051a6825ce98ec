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

std::vector<int64_t> generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt,
                              const GenerateConfig& cfg,
                              const std::function<bool(int64_t)>& on_token) {
  TORCH_CHECK(!prompt.empty(), "generate: the prompt has no tokens");
  TORCH_CHECK(cfg.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
  cfg.sampling.validate();
  const int64_t vocab = model.config().vocab_size;
  for (int64_t id : prompt) {
    TORCH_CHECK(id >= 0 && id < vocab, "generate: prompt token id ", id,
                " is outside the vocabulary [0, ", vocab, ")");
  }
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
    const int64_t next = sample_next(logits[0][-1], cfg.sampling, gen);
    out.push_back(next);
    const bool stop =
        std::find(cfg.stop_ids.begin(), cfg.stop_ids.end(), next) != cfg.stop_ids.end();
    if ((on_token && !on_token(next)) || stop) break;
    input = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(device));
  }
  if (was_training) model.train();
  return out;
}

}  // namespace qat::models
