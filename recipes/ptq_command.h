// `qat ptq <config.yaml> [key=value ...]`: post-training quantization with the config's `quant`
// section -- no training.
#pragma once

#include "recipes/command.h"

namespace qat::recipes {

void add_ptq_command(CLI::App& app, CommandList& commands);

}  // namespace qat::recipes
