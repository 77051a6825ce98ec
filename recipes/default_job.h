// `qat demo`: the default job. SmolLM2-135M-Instruct -> evaluate -> round-to-nearest int4 (PTQ)
// -> short QAT fine-tune in the same format -> evaluate -> export a llama.cpp GGUF whose blocks
// dequantize to the trained weights bit for bit, then a before/after table.
#pragma once

#include "recipes/command.h"

namespace qat::recipes {

void add_default_job_command(CLI::App& app, CommandList& commands);

}  // namespace qat::recipes
