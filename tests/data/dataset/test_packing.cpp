// Packing invariants: every token once and in order, positions restarting per segment, labels
// aligned and masked at segment starts and on padding; the padded (non-packed) mode.
#include "data/dataset/packing.h"
#include "data/dataset/random.h"
#include "tests/support/catch_torch.h"

using qat::data::Example;
using qat::data::kIgnoreIndex;
using qat::data::kPadSegment;
using qat::data::PackedSequence;

namespace {

// Documents of random lengths in [1, max_len]; token t of document d is d * 1000 + t, so the
// stream tells which document and position every token came from. Some labels are masked.
std::vector<Example> documents(size_t count, size_t max_len, uint64_t seed) {
  qat::data::SplitMix64 rng(seed);
  std::vector<Example> docs(count);
  for (size_t d = 0; d < count; ++d) {
    const size_t n = 1 + rng.below(max_len);
    for (size_t t = 0; t < n; ++t) {
      docs[d].tokens.push_back(static_cast<int32_t>(d * 1000 + t));
      docs[d].labels.push_back(t % 3 == 1 ? kIgnoreIndex : static_cast<int32_t>(d * 1000 + t));
    }
  }
  return docs;
}

}  // namespace

TEST_CASE("Packing keeps every token once in order with positions and segments per document",
          "[dataset][packing]") {
  const int64_t seq_len = GENERATE(1, 7, 16, 64);
  const size_t max_len = GENERATE(5, 40);
  const auto last = GENERATE(qat::data::LastSequence::kDrop, qat::data::LastSequence::kPad);
  CAPTURE(seq_len, max_len, static_cast<int>(last));
  const auto docs = documents(30, max_len, 11 + max_len);
  size_t total = 0;
  for (const auto& d : docs) total += d.tokens.size();

  qat::data::PackOptions o;
  o.seq_len = seq_len;
  o.last = last;
  o.pad_id = -7;
  const auto seqs = qat::data::pack_examples(docs, o);
  const size_t full = total / seq_len;
  const bool padded = last == qat::data::LastSequence::kPad && total % seq_len != 0;
  REQUIRE(seqs.size() == full + (padded ? 1 : 0));

  size_t d = 0, t = 0;  // the next expected token: document d, position t
  for (size_t s = 0; s < seqs.size(); ++s) {
    const PackedSequence& q = seqs[s];
    REQUIRE(q.tokens.size() == static_cast<size_t>(seq_len));
    REQUIRE(q.labels.size() == q.tokens.size());
    REQUIRE(q.position_ids.size() == q.tokens.size());
    REQUIRE(q.segment_ids.size() == q.tokens.size());
    for (size_t i = 0; i < q.tokens.size(); ++i) {
      CAPTURE(s, i);
      if (q.segment_ids[i] == kPadSegment) {  // padding only at the end of the last sequence
        CHECK(s + 1 == seqs.size());
        CHECK(q.tokens[i] == -7);
        CHECK(q.labels[i] == kIgnoreIndex);
        CHECK(q.position_ids[i] == 0);
        continue;
      }
      REQUIRE(d < docs.size());
      CHECK(q.tokens[i] == docs[d].tokens[t]);
      const bool segment_start = i == 0 || q.segment_ids[i] != q.segment_ids[i - 1];
      if (segment_start) {
        CHECK(q.position_ids[i] == 0);
        CHECK(q.labels[i] == kIgnoreIndex);
        CHECK(q.segment_ids[i] == (i == 0 ? 0 : q.segment_ids[i - 1] + 1));
        // A new segment starts a document, or continues one at the start of a sequence.
        CHECK((t == 0 || i == 0));
      } else {
        CHECK(q.position_ids[i] == q.position_ids[i - 1] + 1);
        CHECK(q.labels[i] == docs[d].labels[t]);  // aligned with the token
      }
      if (++t == docs[d].tokens.size()) {
        ++d;
        t = 0;
        // The document ends here: the next position (if any) starts a new segment.
        if (i + 1 < q.tokens.size() && q.segment_ids[i + 1] != kPadSegment)
          CHECK(q.segment_ids[i + 1] == q.segment_ids[i] + 1);
      }
    }
  }
  const size_t consumed = full * seq_len + (padded ? total % seq_len : 0);
  size_t seen = 0;
  for (size_t k = 0; k < d; ++k) seen += docs[k].tokens.size();
  CHECK(seen + t == consumed);
}

TEST_CASE("Padded mode gives one example per sequence, truncated or dropped",
          "[dataset][packing]") {
  const std::vector<Example> ex = {{{5, 6, 7}, {kIgnoreIndex, 6, 7}, "a"},
                                   {{1, 2, 3, 4, 5, 6}, {1, 2, 3, 4, 5, 6}, "b"}};
  qat::data::PadOptions o;
  o.seq_len = 4;
  o.pad_id = 9;
  const auto s = qat::data::pad_examples(ex, o);
  REQUIRE(s.size() == 2);
  CHECK(s[0].tokens == std::vector<int32_t>{5, 6, 7, 9});
  CHECK(s[0].labels == std::vector<int32_t>{kIgnoreIndex, 6, 7, kIgnoreIndex});
  CHECK(s[0].position_ids == std::vector<int32_t>{0, 1, 2, 0});
  CHECK(s[0].segment_ids == std::vector<int32_t>{0, 0, 0, kPadSegment});
  CHECK(s[1].tokens == std::vector<int32_t>{1, 2, 3, 4});
  CHECK(s[1].labels == std::vector<int32_t>{1, 2, 3, 4});
  CHECK(s[1].position_ids == std::vector<int32_t>{0, 1, 2, 3});

  o.overflow = qat::data::Overflow::kDrop;
  const auto dropped = qat::data::pad_examples(ex, o);
  REQUIRE(dropped.size() == 1);
  CHECK(dropped[0].tokens == s[0].tokens);
}

TEST_CASE("Packing rejects a bad length or misaligned labels", "[dataset][packing][errors]") {
  using Catch::Contains;
  qat::data::PackOptions o;
  CHECK_THROWS_WITH(qat::data::pack_examples({}, o),
                    Contains("seq_len must be in [1, 2^30], got 0"));
  o.seq_len = 4;
  const std::vector<Example> bad = {{{1, 2}, {1}, "f.jsonl:3"}};
  CHECK_THROWS_WITH(qat::data::pack_examples(bad, o),
                    Contains("f.jsonl:3: example has 2 tokens but 1 labels"));
  CHECK_THROWS_WITH(qat::data::pad_examples(bad, {4, 0}), Contains("2 tokens but 1 labels"));
}
