// `qat eval <run|checkpoint|config|model> [key=value ...] [--sequences N]`: held-out loss;
// `--reference [MODEL] [--text FILE] [--context N] [--chunks N] [--json FILE]`: the fidelity
// report (trainers/fidelity.h). `qat text <config> [--split heldout|train] --out FILE`: the
// config's documents as one text file, for llama.cpp's tools.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "qat/models/llama.h"
#include "recipes/command.h"
#include "trainers/fidelity.h"

namespace qat::recipes {

// `model` against the model at `reference` (.gguf or HF directory, loaded in float32 with its
// tokenizer) on the text file `text_path`, as `qat eval --reference --text` measures it: the
// report's JSON with "reference" and "text" added. For the model card of `qat export`.
nlohmann::json fidelity_json(models::LlamaForCausalLM& model, const std::string& reference,
                             const std::string& text_path, const train::FidelityOptions& options);

void add_eval_command(CLI::App& app, CommandList& commands);

}  // namespace qat::recipes
