// `qat inspect` and `qat generate`: look inside a checkpoint, and run a model on a prompt.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "recipes/command.h"

namespace qat::recipes {

struct InspectOptions {
  std::string path;
  bool all_tensors = false;  // every tensor instead of one line per layer pattern
};
int run_inspect(const InspectOptions& opts, std::ostream& out);

struct GenerateOptions {
  std::string model;  // empty: models::default_model_path()
  std::string prompt = "What is quantization of neural networks?";
  bool chat = true;    // wrap the prompt in the model's chat template when it has one
  std::string system;  // optional system message for chat
  int64_t max_new_tokens = 96;
  models::SamplingConfig sampling;  // greedy by default
  std::string dtype = "fp32";       // fp32, bf16 or fp16
  std::string device = "cpu";       // cpu or cuda
};
int run_generate(const GenerateOptions& opts, std::ostream& out, std::ostream& log);

// `qat formats`: the formats table (bits, mapping, block, scale dtype, LSQ).
void print_formats(std::ostream& out);

// Adds `formats`, `inspect` and `generate` to the command line.
void add_model_commands(CLI::App& app, CommandList& commands);

}  // namespace qat::recipes
