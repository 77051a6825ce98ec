// `qat train <config.yaml> [key=value ...] [--nproc N]`.
#pragma once

#include "recipes/command.h"

namespace qat::recipes {

void add_train_commands(CLI::App& app, CommandList& commands);

}  // namespace qat::recipes
