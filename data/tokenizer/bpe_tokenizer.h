// Byte-level BPE as HF tokenizers runs it: added tokens are cut out of the text, the rest is
// pre-tokenized and BPE-encoded piece by piece, a template adds special tokens; decoding maps
// byte-level characters back to bytes. Built from a tokenizer.json or from GGUF metadata.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "data/tokenizer/added_tokens.h"
#include "data/tokenizer/bpe_model.h"
#include "data/tokenizer/pre_tokenizer.h"
#include "data/tokenizer/tokenizer.h"

namespace qat::data {

// One element of a TemplateProcessing "single" template: the encoded text or fixed ids.
struct TemplatePiece {
  bool is_sequence = false;
  std::vector<int32_t> ids;
};

enum class BpeDecoder {
  kByteLevel,  // byte-level characters back to bytes, then lossy UTF-8
  kNone,       // HF without a decoder: tokens joined by single spaces
};

struct BpeTokenizerSpec {
  std::string source;  // file path or "GGUF metadata", for error messages
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  BpeOptions options;
  std::vector<AddedToken> added_tokens;
  PreTokenizer pre_tokenizer;
  std::vector<TemplatePiece> post_template;  // empty: no post-processing
  BpeDecoder decoder = BpeDecoder::kByteLevel;
  SpecialTokenIds special;
};

class BpeTokenizer : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeTokenizerSpec spec);

  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  bool is_special(int32_t id) const override;

 protected:
  std::vector<int32_t> encode_impl(std::string_view text, bool add_special,
                                   bool parse_special) const override;
  std::string decode_impl(const std::vector<int32_t>& ids, bool skip_special) const override;

 private:
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;

  std::string source_;
  BpeModel model_;
  AddedVocabulary added_;
  PreTokenizer pre_tokenizer_;
  std::vector<TemplatePiece> post_template_;
  BpeDecoder decoder_;
  int32_t vocab_size_ = 0;
};

// Parses a tokenizer.json document. `source` names it in errors. Unsupported components
// (normalizers, non-BPE models, other pre-tokenizers/decoders/post-processors) throw
// std::invalid_argument naming the JSON field and the component.
std::unique_ptr<BpeTokenizer> parse_bpe_tokenizer_json(std::string_view json,
                                                       const std::string& source);
// Reads `path`, and bos/eos/pad from a tokenizer_config.json in the same directory if present.
std::unique_ptr<BpeTokenizer> load_bpe_tokenizer_json(const std::string& path);

}  // namespace qat::data
