// The default job of this stage: quantization-aware training vs post-training quantization of a
// small MLP distilled from a float teacher, followed by convert() and an exactness check.
// (The SmolLM2 end-to-end job replaces it once the model, data and trainer issues land.)
#pragma once

#include <ostream>
#include <string>

namespace qat::recipes {

struct DemoOptions {
  std::string weight_format = "int3";
  int group_size = 32;
  int steps = 500;
  uint64_t seed = 0;
  std::string metrics_path;
};

int run_demo(const DemoOptions& opts, std::ostream& out);
void print_formats(std::ostream& out);

}  // namespace qat::recipes
