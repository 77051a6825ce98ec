// Pre-tokenizers of HF tokenizers that byte-level BPE models use: Split (regex or literal, five
// delimiter behaviours, invert), ByteLevel (GPT-2 regex + byte-to-character mapping) and Digits,
// chained like pre_tokenizers.Sequence. Each step refines the pieces of the previous one.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/regex.h"

namespace qat::data {

// HF's SplitDelimiterBehavior: what happens to the matched delimiter.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Parses "Removed", "Isolated", ... ; throws std::invalid_argument naming `what` otherwise.
SplitBehavior parse_split_behavior(const std::string& name, const std::string& what);

// The GPT-2 pattern HF's ByteLevel pre-tokenizer applies when use_regex is true.
extern const char* const kByteLevelPattern;

class PreTokenizer {
 public:
  // Split on `regex` matches. `what` names the JSON field in error messages.
  void add_split(const std::string& regex, SplitBehavior behavior, bool invert,
                 const std::string& what);
  // Optionally prepends a space to each piece, splits it with kByteLevelPattern, then maps its
  // bytes to the byte-level alphabet.
  void add_byte_level(bool add_prefix_space, bool use_regex);
  // Splits digits (Unicode Nd/Nl/No) from the rest: each digit alone or runs of digits.
  void add_digits(bool individual_digits);

  // The pieces of `text` (valid UTF-8) the model encodes one by one; empty pieces are dropped.
  std::vector<std::string> run(std::string_view text) const;
  // True when a ByteLevel step maps bytes (the model then sees byte-level characters).
  bool maps_bytes() const { return maps_bytes_; }
  bool empty() const { return steps_.empty(); }

 private:
  struct Step {
    enum class Kind { kSplit, kByteLevel } kind = Kind::kSplit;
    std::shared_ptr<const Regex> regex;  // null for a ByteLevel step without use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
  };
  std::vector<Step> steps_;
  bool maps_bytes_ = false;
};

}  // namespace qat::data
