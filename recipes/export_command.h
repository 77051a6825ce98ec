// `qat export`: writes a trained (or pretrained) model as a checkpoint that an engine loads.
#pragma once

#include "recipes/command.h"

namespace qat::recipes {

void add_export_command(CLI::App& app, CommandList& commands);

}  // namespace qat::recipes
