#include "data/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "data/tokenizer/utf8.h"

namespace qat::data {

const char* const kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior parse_split_behavior(const std::string& name, const std::string& what) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  throw std::invalid_argument(what +
                              ": expected one of Removed, Isolated, MergedWithPrevious, "
                              "MergedWithNext, Contiguous; found '" +
                              name + "'");
}

void PreTokenizer::add_split(const std::string& regex, SplitBehavior behavior, bool invert,
                             const std::string& what) {
  Step s;
  s.regex = std::make_shared<const Regex>(regex, what);
  s.behavior = behavior;
  s.invert = invert;
  steps_.push_back(std::move(s));
}

void PreTokenizer::add_byte_level(bool add_prefix_space, bool use_regex) {
  Step s;
  s.kind = Step::Kind::kByteLevel;
  if (use_regex) {
    // One compiled copy of the GPT-2 pattern serves every tokenizer in the process.
    static const auto gpt2 = std::make_shared<const Regex>(kByteLevelPattern, "ByteLevel");
    s.regex = gpt2;
  }
  s.add_prefix_space = add_prefix_space;
  steps_.push_back(std::move(s));
  maps_bytes_ = true;
}

void PreTokenizer::add_digits(bool individual_digits) {
  // Rust's char::is_numeric is exactly the categories Nd, Nl and No, i.e. \p{N}.
  add_split(R"(\p{N})", individual_digits ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
            false, "Digits");
}

namespace {

struct Span {
  size_t begin, end;
  bool is_match;
};

// HF's NormalizedString::split: turn the matches into a partition of the piece, then merge or
// drop the delimiters according to `behavior`. Returns the kept spans.
std::vector<std::pair<size_t, size_t>> split_spans(std::string_view piece, const Regex& regex,
                                                   SplitBehavior behavior, bool invert) {
  std::vector<Span> spans;
  size_t prev = 0;
  for (const auto& [b, e] : regex.find_all(piece)) {
    if (prev != b) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != piece.size()) spans.push_back({prev, piece.size(), invert});

  std::vector<std::pair<size_t, size_t>> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const auto& s : spans) out.emplace_back(s.begin, s.end);
      break;
    case SplitBehavior::kRemoved:
      for (const auto& s : spans)
        if (!s.is_match) out.emplace_back(s.begin, s.end);
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& s : spans) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().second = s.end;
        } else {
          out.emplace_back(s.begin, s.end);
        }
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      // Walk backwards so a delimiter joins the span after it.
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().first = it->begin;
        } else {
          out.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    case SplitBehavior::kContiguous:
      for (const auto& s : spans) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().second = s.end;
        } else {
          out.emplace_back(s.begin, s.end);
        }
        previous_match = s.is_match;
      }
      break;
  }
  return out;
}

}  // namespace

std::vector<std::string> PreTokenizer::run(std::string_view text) const {
  std::vector<std::string> pieces;
  if (!text.empty()) pieces.emplace_back(text);
  const auto& table = ByteLevelTable::get();
  for (const Step& step : steps_) {
    std::vector<std::string> next;
    next.reserve(pieces.size());
    for (std::string& piece : pieces) {
      if (step.kind == Step::Kind::kByteLevel && step.add_prefix_space && piece[0] != ' ') {
        piece.insert(piece.begin(), ' ');
      }
      const size_t first = next.size();
      if (step.regex) {
        const SplitBehavior behavior =
            step.kind == Step::Kind::kSplit ? step.behavior : SplitBehavior::kIsolated;
        for (const auto& [b, e] : split_spans(piece, *step.regex, behavior, step.invert)) {
          if (e > b) next.push_back(piece.substr(b, e - b));
        }
      } else {
        next.push_back(std::move(piece));
      }
      if (step.kind == Step::Kind::kByteLevel) {
        for (size_t i = first; i < next.size(); ++i) next[i] = table.encode(next[i]);
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace qat::data
