// Fixed-length training sequences from tokenized examples.
//   pack_examples: documents concatenated greedily in order into sequences of exactly seq_len
//     tokens (pretraining style); a document that does not fit continues in the next sequence.
//   pad_examples: one example per sequence, truncated or padded (instruction tuning).
// Both emit position_ids and segment_ids so the model can build a block-diagonal causal mask
// (attend only within the same segment) and restart rotary positions at every document.
#pragma once

#include <cstdint>
#include <vector>

#include "data/dataset/example.h"

namespace qat::data {

// Segment id of padding positions: they belong to no document.
inline constexpr int32_t kPadSegment = -1;

// All four have length seq_len.
struct PackedSequence {
  std::vector<int32_t> tokens;
  // Aligned with tokens (the trainer shifts). kIgnoreIndex on padding, where the example had
  // kIgnoreIndex, and at the first position of every segment: so that after the shift no
  // position is asked to predict the first token of a document it cannot attend to.
  std::vector<int32_t> labels;
  std::vector<int32_t> position_ids;  // 0, 1, ... from the start of each segment; 0 on padding
  std::vector<int32_t> segment_ids;   // 0, 1, ... per document piece in this sequence; kPadSegment
};

enum class LastSequence {
  kDrop,  // default: the final partial sequence is dropped (every sequence is all real tokens)
  kPad,   // it is padded with pad_id (labels kIgnoreIndex, segment kPadSegment)
};

struct PackOptions {
  int64_t seq_len = 0;  // > 0
  LastSequence last = LastSequence::kDrop;
  int32_t pad_id = 0;  // the tokenizer's pad id, or its EOS when it has none
};

// Greedy in-order packing. Every token of every example appears exactly once, in order, except
// those of a dropped final partial sequence. A document longer than seq_len spans several
// sequences (each piece is its own segment with positions from 0).
std::vector<PackedSequence> pack_examples(const std::vector<Example>& examples,
                                          const PackOptions& options);

enum class Overflow {
  kTruncate,  // default: keep the first seq_len tokens
  kDrop,      // skip the example
};

struct PadOptions {
  int64_t seq_len = 0;  // > 0
  int32_t pad_id = 0;
  Overflow overflow = Overflow::kTruncate;
};

// One sequence per example: its tokens (truncated to seq_len or dropped, per options), then
// padding; positions 0..n-1, segment 0 (kPadSegment on padding), padding labelled kIgnoreIndex.
// The example's own labels are kept as they are (a single segment needs no boundary mask).
std::vector<PackedSequence> pad_examples(const std::vector<Example>& examples,
                                         const PadOptions& options);

}  // namespace qat::data
