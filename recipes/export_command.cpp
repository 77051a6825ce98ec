// `qat export` lands with qat/export (issue 6); until then the command says so.
#include "recipes/export_command.h"

#include <stdexcept>

namespace qat::recipes {

void add_export_command(CLI::App& app, CommandList& commands) {
  auto* sub = app.add_subcommand("export", "Export a model to GGUF / Hugging Face formats (not built yet)");
  commands.push_back({sub, []() -> int { throw std::runtime_error("qat export is not built yet"); }});
}

}  // namespace qat::recipes
