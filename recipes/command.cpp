#include "recipes/command.h"

namespace qat::recipes {
namespace {
std::vector<std::string>& args_storage() {
  static std::vector<std::string> args;
  return args;
}
}  // namespace

void set_process_args(int argc, char** argv) {
  args_storage().assign(argv, argv + argc);
}

const std::vector<std::string>& process_args() {
  return args_storage();
}

}  // namespace qat::recipes
