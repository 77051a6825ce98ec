// The BPE model: a vocabulary, ranked merges and the merge loop of HF tokenizers' BPE
// (models/bpe/word.rs): symbols are merged lowest rank first, leftmost first among equal
// ranks, with a priority queue. Results for words are cached.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace qat::data {

struct BpeOptions {
  std::optional<std::string> unk_token;  // characters missing from the vocab map to it
  bool fuse_unk = false;                 // consecutive unknown characters give one unk
  bool byte_fallback = false;            // unknown characters become <0xXX> byte tokens
  bool ignore_merges = false;            // a word that is itself in the vocab is one token
};

class BpeModel {
 public:
  // `what` names the source (a file path) in error messages. Every merge must name two tokens
  // of the vocabulary whose concatenation is also in it; a later duplicate merge takes the later
  // rank, as in HF.
  BpeModel(std::unordered_map<std::string, int32_t> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& what);

  // Appends the ids of one pre-tokenized word. Characters that are neither in the vocab nor
  // covered by unk/byte fallback are dropped, as HF does.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Empty string for ids the model does not define.
  const std::string& id_to_token(int32_t id) const;
  // One past the largest id in the vocabulary.
  int32_t size() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct MergeTarget {
    uint32_t rank;
    int32_t id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, MergeTarget> merges_;
  BpeOptions options_;
  std::optional<int32_t> unk_id_;

  // HF caches up to 10,000 words; words over 256 bytes are not worth keeping.
  static constexpr size_t kCacheCapacity = 10000;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace qat::data
