// `qat eval <run|checkpoint|config|model> [key=value ...] [--sequences N]`: held-out loss;
// `--reference [MODEL] [--text FILE] [--context N] [--chunks N] [--json FILE]`: the fidelity
// report (trainers/fidelity.h). `qat text <config> [--split heldout|train] --out FILE`: the
// config's documents as one text file, for llama.cpp's tools.
#pragma once

#include "recipes/command.h"

namespace qat::recipes {

void add_eval_command(CLI::App& app, CommandList& commands);

}  // namespace qat::recipes
