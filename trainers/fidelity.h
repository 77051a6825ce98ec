// How close a (quantized) model's next-token predictions are to a reference model's on a text:
// the numbers llama.cpp's `llama-perplexity --kl-divergence` prints, with its definitions and
// chunking, so the two can be put side by side.
//
// The text's tokens (with the tokenizer's BOS when it adds one) are cut into chunks of `context`
// tokens (the remainder is dropped); a chunk's first token is replaced by BOS when the tokenizer
// adds one, both models run on the chunk, and only the second half is scored: positions
// context/2 .. context-2 predict tokens context/2+1 .. context-1. For each scored token, with
// log-probabilities lq (the model) and lb (the reference), in float64:
//   NLL = -lq[y], NLL_base = -lb[y]
//   KLD = sum_v exp(lb_v) (lb_v - lq_v)                   KL(reference || model)
//   dp  = exp(-NLL) - exp(-NLL_base)                       change in the right token's probability
//   same top-1: argmax lq == argmax lb
// Reported: PPL = exp(mean NLL) of both, dPPL = PPL - PPL_base, mean/median/99%/99.9%/max KLD,
// mean dp and RMS dp, the same-top-1 rate, and llama.cpp's uncertainties (standard errors).
//
// Where ours differs from llama.cpp (docs/numerics.md): llama.cpp stores the base model's
// log-probabilities as 16-bit codes over [max - 16, max] and drops terms below -16 from the KLD
// sum, and its quantized dot products round activations to 8 bits; ours are exact float64
// statistics of float32 logits.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "trainers/trainer.h"

namespace qat::train {

struct FidelityOptions {
  int64_t context = 512;  // n_ctx: tokens per chunk (llama-perplexity -c)
  int64_t chunks = 0;     // at most this many chunks (--chunks); 0: every whole chunk
};

struct FidelityReport {
  int64_t chunks = 0, context = 0;
  int64_t tokens = 0;  // scored tokens
  double ppl = 0, ppl_base = 0;
  double delta_ppl = 0;     // PPL - PPL_base
  double ln_ppl_ratio = 0;  // mean NLL - mean NLL_base
  double ln_ppl_ratio_unc = 0;
  double kld_mean = 0, kld_unc = 0, kld_median = 0, kld_p99 = 0, kld_p999 = 0, kld_max = 0;
  double dp_mean = 0, dp_rms = 0, dp_rms_unc = 0;
  double same_top1 = 0, same_top1_unc = 0;  // fractions

  nlohmann::json to_json() const;
  std::string to_text() const;  // the table `qat eval --reference` prints
};

// Per-token statistics, accumulated over scored rows.
class FidelityAccumulator {
 public:
  // logits, reference_logits (rows, vocab) of the two models at the scored positions, and the
  // tokens they should predict (rows).
  void add(const at::Tensor& logits, const at::Tensor& reference_logits, const at::Tensor& targets);
  FidelityReport finish(int64_t chunks, int64_t context) const;

 private:
  std::vector<double> nll_, nll_base_, kld_, dp_;
  int64_t same_top1_ = 0;
};

// The percentile llama.cpp reports: linear interpolation between sorted values at
// fraction * (n - 1).
double percentile_sorted(const std::vector<double>& sorted, double fraction);

// Both models over `tokens` chunked as above. `bos`: the id that replaces each chunk's first token
// (nullopt: none). Throws when the text is shorter than two chunks (llama-perplexity's rule) or
// the vocabularies differ. Runs without gradients in eval mode.
FidelityReport compare_models(models::LlamaForCausalLM& model, models::LlamaForCausalLM& reference,
                              const std::vector<int32_t>& tokens, std::optional<int32_t> bos,
                              const FidelityOptions& options);

// Both models over fixed-length sequences (the trainer's held-out set): every target position
// (labels != -100, packing respected) scored, not llama-perplexity's chunking; the first
// `max_sequences` (0: all), `batch` at a time. For the default job's table.
FidelityReport compare_on_sequences(models::LlamaForCausalLM& model,
                                    models::LlamaForCausalLM& reference, const SequenceSet& data,
                                    int64_t max_sequences, int64_t batch);

}  // namespace qat::train
