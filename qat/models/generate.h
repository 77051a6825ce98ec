// Autoregressive decoding with a KV cache: greedy or sampled (temperature, top-k, top-p), the
// order and semantics of transformers' logits processors.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "qat/models/llama.h"

namespace qat::models {

struct SamplingConfig {
  double temperature = 0.0;  // 0: greedy (argmax); otherwise logits / temperature
  int64_t top_k = 0;         // 0: off; else keep the k most likely tokens
  double top_p = 1.0;        // 1: off; else the smallest set whose probability reaches top_p
  uint64_t seed = 0;
  void validate() const;
};

// Picks the next token from one row of logits (vocab,). Ties in greedy mode go to the lowest id.
int64_t sample_next(const at::Tensor& logits, const SamplingConfig& cfg, at::Generator& gen);

struct GenerateConfig {
  int64_t max_new_tokens = 128;
  SamplingConfig sampling;
  std::vector<int64_t> stop_ids;  // generation ends after emitting one of these
  int64_t greedy_tokens = 0;      // the first n new tokens are the argmax whatever the sampling
};

// Runs the prompt through the model (one prefill), then decodes one token at a time. `on_token`
// sees each new token as it is produced and may return false to stop. Returns the new tokens.
std::vector<int64_t> generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt,
                              const GenerateConfig& cfg,
                              const std::function<bool(int64_t)>& on_token = nullptr);

// Continues every prompt at once: one batched forward per step over one KV cache. All prompts have
// the same length (no padding). Row i samples with its own generator seeded by seeds[i]
// (cfg.sampling.seed is not used), so a row's tokens depend on its seed and prompt, not on its
// place in the batch. A row ends after its first stop id (the stop id is kept); the batch ends when
// every row has ended or after max_new_tokens. Returns each row's new tokens.
std::vector<std::vector<int64_t>> generate_batch(LlamaForCausalLM& model,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const std::vector<uint64_t>& seeds,
                                                 const GenerateConfig& cfg);

}  // namespace qat::models
