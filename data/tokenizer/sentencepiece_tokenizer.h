// SentencePiece models (.model files, Llama 1/2, Mistral, Gemma...) through libsentencepiece.
#pragma once

#include <memory>
#include <string>

#include "data/tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace qat::data {

struct GgufTokenizerData;

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Loads a .model file; throws std::runtime_error naming the path and libsentencepiece's
  // status message.
  explicit SentencePieceTokenizer(const std::string& path);
  // From a serialized ModelProto held in memory; `source` names it in errors.
  SentencePieceTokenizer(const std::string& serialized_proto, const std::string& source);
  ~SentencePieceTokenizer() override;

  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;
  int32_t vocab_size() const override;
  bool is_special(int32_t id) const override;
  // Whether encode(add_special=true) prepends BOS (true by default, as Llama's tokenizers do).
  void set_add_bos(bool add_bos) { add_bos_ = add_bos; }
  void set_add_eos(bool add_eos) { add_eos_ = add_eos; }

 protected:
  // parse_special is ignored: SentencePiece never parses control tokens (<s>, </s>) from text
  // and always matches user-defined symbols.
  std::vector<int32_t> encode_impl(std::string_view text, bool add_special,
                                   bool parse_special) const override;
  std::string decode_impl(const std::vector<int32_t>& ids, bool skip_special) const override;

 private:
  void init_special();

  std::string source_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  bool add_bos_ = true;
  bool add_eos_ = false;
};

// A SentencePiece BPE model (byte fallback, "▁" for spaces) built from GGUF "llama" metadata
// (tokens, scores, token types), the way llama.cpp's SPM tokenizer reads it.
std::unique_ptr<Tokenizer> sentencepiece_from_gguf(const GgufTokenizerData& data);

}  // namespace qat::data
