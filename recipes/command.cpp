#include "recipes/command.h"

#include <algorithm>

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

void add_sampling_options(CLI::App& app, models::SamplingConfig& s, const std::string& seed_help) {
  app.add_option("--temperature", s.temperature, "sampling temperature (0 = greedy)")
      ->capture_default_str();
  app.add_option("--top-k", s.top_k, "keep the k most likely tokens (0 = off)")
      ->capture_default_str();
  app.add_option("--top-p", s.top_p, "nucleus sampling mass (1 = off)")->capture_default_str();
  app.add_option("--seed", s.seed, seed_help)->capture_default_str();
}

at::ScalarType parse_dtype_option(const std::string& name,
                                  std::initializer_list<at::ScalarType> allowed,
                                  const std::string& command) {
  struct Spelling {
    std::vector<std::string> names;  // the first is the one error messages show
    at::ScalarType type;
  };
  static const std::vector<Spelling> spellings = {{{"fp32", "f32", "float32"}, at::kFloat},
                                                  {{"bf16", "bfloat16"}, at::kBFloat16},
                                                  {{"fp16", "f16", "float16"}, at::kHalf}};
  std::string expected;
  for (const auto& sp : spellings) {
    if (std::find(allowed.begin(), allowed.end(), sp.type) == allowed.end()) continue;
    expected += (expected.empty() ? "" : ", ") + sp.names.front();
    if (std::find(sp.names.begin(), sp.names.end(), name) != sp.names.end()) return sp.type;
  }
  TORCH_CHECK(false, command, ": --dtype must be one of ", expected, ", got '", name, "'");
}

}  // namespace qat::recipes
