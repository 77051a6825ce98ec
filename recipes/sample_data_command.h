// `qat sample-data`: text sampled from a model, written as JSON Lines, for distillation data that
// follows the teacher's own distribution (data-free QAT, as LLM-QAT: each sample starts from a
// random vocabulary token, the first few tokens greedy, the rest sampled). Training reads the file
// with `data.format: jsonl` or as `data.extra_train`.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "recipes/command.h"

namespace qat::recipes {

struct SampleDataOptions {
  std::string model;  // empty: models::default_model_path()
  std::string out;    // the .jsonl file; <out>.meta.json records the settings for resuming
  int64_t sequences = 1024;
  int64_t tokens = 256;       // new tokens per sample at most (a sample also ends at EOS)
  int64_t batch = 32;         // samples decoded together
  int64_t greedy_tokens = 3;  // the first n new tokens are the argmax (LLM-QAT's hybrid)
  // temperature 1 (the teacher's own distribution); seed: of the first tokens and the sampling
  models::SamplingConfig sampling{1.0};
  std::string dtype = "fp32";  // fp32 or bf16
  std::string device = "cpu";
};

// Writes `opts.sequences` records {"text", "sample", "tokens"} to opts.out, a batch at a time.
// Sample i depends only on the model, i and the settings (its first token and sampling generator
// come from derive_seed(seed, i)), and batches are the fixed ranges [k*batch, (k+1)*batch): a run
// that stops continues from its last complete batch with the same settings, and the file equals an
// uninterrupted run's. Refuses to continue a file written with other settings.
int run_sample_data(const SampleDataOptions& opts, std::ostream& log);

void add_sample_data_command(CLI::App& app, CommandList& commands);

}  // namespace qat::recipes
