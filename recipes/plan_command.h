// `qat plan <config.yaml> [key=value ...] [--nproc N]`: the memory plan of a training run
// (recipes/memory_plan.h) from the model's shape, without loading its weights.
#pragma once

#include "recipes/command.h"

namespace qat::recipes {

void add_plan_command(CLI::App& app, CommandList& commands);

}  // namespace qat::recipes
