// A tiny training setup shared by the trainer tests: a 2-layer Llama with random weights, random
// token sequences, and a config that trains it for a few steps in a temp directory.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "qat/models/llama.h"
#include "recipes/config/recipe_config.h"
#include "recipes/methods.h"
#include "tests/qat/models/tiny_llama.h"
#include "trainers/trainer.h"

namespace qat::test {

constexpr int64_t kTinyVocab = 96;

// The same model for a given config on every call (and in every process): seeded init, then
// the config's method applied (LoRA init is seeded by train.seed).
inline std::shared_ptr<models::LlamaForCausalLM> tiny_model(const recipes::RecipeConfig& cfg) {
  at::manual_seed(1234);
  auto model = std::make_shared<models::LlamaForCausalLM>(tiny_llama_config(kTinyVocab, false));
  at::manual_seed(static_cast<uint64_t>(cfg.train.seed));
  recipes::apply_method(*model, cfg);
  return model;
}

// n sequences of length t over the tiny vocabulary; every 7th label is masked.
inline train::SequenceSet tiny_sequences(int64_t n, int64_t t, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  train::SequenceSet s;
  s.tokens = at::randint(kTinyVocab, {n, t}, gen, at::kLong);
  s.labels = s.tokens.clone();
  s.labels.view({-1}).slice(0, 0, n * t, 7).fill_(-100);
  return s;
}

inline recipes::RecipeConfig tiny_config(const std::string& out_dir,
                                         const std::vector<std::string>& overrides = {}) {
  const std::string yaml =
      "output_dir: " + out_dir +
      "\n"
      "method: qat\n"
      "quant: {weight: gguf_q4_0}\n"
      "data: {seq_len: 16}\n"
      "train: {steps: 6, micro_batch: 4, grad_accum: 1, lr: 1.0e-3, warmup_steps: 2, seed: 3}\n"
      "eval: {sequences: 8}\n"
      "log: {progress: off, plot: false}\n";
  return recipes::parse_recipe_config(yaml, "test.yaml", overrides);
}

}  // namespace qat::test
