// Added tokens (tokenizer.json "added_tokens", GGUF control/user-defined tokens): strings that
// are cut out of the text before pre-tokenization and map to one id each, as HF tokenizers'
// AddedVocabulary does (leftmost-longest match; lstrip/rstrip/single_word honoured).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qat::data {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;      // skipped by decode(skip_special=true)
  bool lstrip = false;       // swallow whitespace on the left
  bool rstrip = false;       // swallow whitespace on the right
  bool single_word = false;  // only match when not inside a word
  bool normalized = false;   // matched on normalized text (identical here: no normalizer)
};

// One piece of the input after added tokens were cut out: either an added token's id or a span
// of ordinary text (id < 0).
struct TextSegment {
  int32_t id;
  size_t begin, end;
};

class AddedVocabulary {
 public:
  void add(AddedToken token);
  // Splits `text` (valid UTF-8) into text spans and added-token matches.
  std::vector<TextSegment> split(std::string_view text) const;
  const AddedToken* find(int32_t id) const;
  const AddedToken* find(std::string_view content) const;
  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie over the token contents: the longest token starting at a position is found by
  // walking at most max-length bytes.
  struct Node {
    std::unordered_map<unsigned char, int32_t> next;
    int32_t token = -1;  // index into tokens_
  };
  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  std::vector<Node> trie_{Node{}};
};

}  // namespace qat::data
