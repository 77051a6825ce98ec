// A compiled PCRE2 pattern (UTF + UCP, JIT when available) used by the pre-tokenizers. The
// tokenizer.json patterns are written for Oniguruma (HF tokenizers); PCRE2 with Unicode
// properties accepts the same syntax for every pattern real tokenizers ship.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qat::data {

class Regex {
 public:
  // Throws std::invalid_argument naming `what` (e.g. "pre_tokenizer.pattern.Regex"), the
  // pattern and PCRE2's message with the offset when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping, non-empty matches [begin, end) from left to right. `text` must be valid
  // UTF-8 (the tokenizer validates input once, before any pattern runs).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

// Quotes `literal` so that it matches itself (HF's Split {"String": ...} pattern).
std::string regex_escape(std::string_view literal);

}  // namespace qat::data
