// A tokenized training example, the unit every dataset reader produces and packing consumes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qat::data {

// Label of a position that is excluded from the loss (the Hugging Face / PyTorch convention of
// cross_entropy's ignore_index).
inline constexpr int32_t kIgnoreIndex = -100;

// tokens and labels have the same length and are aligned: labels[i] is tokens[i] when position i
// is in the loss, kIgnoreIndex otherwise. The trainer shifts (position i predicts labels[i + 1]).
struct Example {
  std::vector<int32_t> tokens;
  std::vector<int32_t> labels;
  std::string source;  // "file:line" (or "file: record N") of the record it came from
};

}  // namespace qat::data
