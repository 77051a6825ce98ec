#include "data/dataset/packing.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace qat::data {
namespace {

void check_example(const Example& ex) {
  if (ex.tokens.size() != ex.labels.size()) {
    throw std::invalid_argument(ex.source + ": example has " + std::to_string(ex.tokens.size()) +
                                " tokens but " + std::to_string(ex.labels.size()) + " labels");
  }
}

void check_seq_len(int64_t seq_len, const char* who) {
  if (seq_len <= 0 || seq_len > (int64_t{1} << 30)) {
    throw std::invalid_argument(std::string(who) + ": seq_len must be in [1, 2^30], got " +
                                std::to_string(seq_len));
  }
}

PackedSequence empty_sequence(int64_t seq_len) {
  PackedSequence s;
  s.tokens.reserve(seq_len);
  s.labels.reserve(seq_len);
  s.position_ids.reserve(seq_len);
  s.segment_ids.reserve(seq_len);
  return s;
}

void pad_to(PackedSequence& s, int64_t seq_len, int32_t pad_id) {
  while (static_cast<int64_t>(s.tokens.size()) < seq_len) {
    s.tokens.push_back(pad_id);
    s.labels.push_back(kIgnoreIndex);
    s.position_ids.push_back(0);
    s.segment_ids.push_back(kPadSegment);
  }
}

}  // namespace

std::vector<PackedSequence> pack_examples(const std::vector<Example>& examples,
                                          const PackOptions& options) {
  check_seq_len(options.seq_len, "pack_examples");
  const size_t seq_len = static_cast<size_t>(options.seq_len);
  std::vector<PackedSequence> out;
  PackedSequence cur = empty_sequence(options.seq_len);
  int32_t segment = 0;  // id of the next segment in `cur`
  for (const auto& ex : examples) {
    check_example(ex);
    size_t i = 0;
    while (i < ex.tokens.size()) {
      // One piece of the document: as much as fits in the current sequence.
      const size_t n = std::min(ex.tokens.size() - i, seq_len - cur.tokens.size());
      for (size_t j = 0; j < n; ++j) {
        cur.tokens.push_back(ex.tokens[i + j]);
        cur.labels.push_back(j == 0 ? kIgnoreIndex : ex.labels[i + j]);
        cur.position_ids.push_back(static_cast<int32_t>(j));
        cur.segment_ids.push_back(segment);
      }
      ++segment;
      i += n;
      if (cur.tokens.size() == seq_len) {
        out.push_back(std::move(cur));
        cur = empty_sequence(options.seq_len);
        segment = 0;
      }
    }
  }
  if (!cur.tokens.empty() && options.last == LastSequence::kPad) {
    pad_to(cur, options.seq_len, options.pad_id);
    out.push_back(std::move(cur));
  }
  return out;
}

std::vector<PackedSequence> pad_examples(const std::vector<Example>& examples,
                                         const PadOptions& options) {
  check_seq_len(options.seq_len, "pad_examples");
  const size_t seq_len = static_cast<size_t>(options.seq_len);
  std::vector<PackedSequence> out;
  out.reserve(examples.size());
  for (const auto& ex : examples) {
    check_example(ex);
    if (ex.tokens.size() > seq_len && options.overflow == Overflow::kDrop) continue;
    const size_t n = std::min(ex.tokens.size(), seq_len);
    PackedSequence s = empty_sequence(options.seq_len);
    s.tokens.assign(ex.tokens.begin(), ex.tokens.begin() + n);
    s.labels.assign(ex.labels.begin(), ex.labels.begin() + n);
    for (size_t j = 0; j < n; ++j) {
      s.position_ids.push_back(static_cast<int32_t>(j));
      s.segment_ids.push_back(0);
    }
    pad_to(s, options.seq_len, options.pad_id);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace qat::data
