// The common tokenizer interface (byte-level BPE and SentencePiece implement it), the factory
// that loads one from a file, and the streaming decoder used while generating.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qat::data {

struct SpecialTokenIds {
  std::optional<int32_t> bos, eos, unk, pad;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text (UTF-8; invalid UTF-8 throws std::invalid_argument with the byte offset) to ids.
  // add_special: apply the model's post-processing (e.g. a leading BOS).
  // parse_special: cut added/special tokens written in the text out as single ids (HF's
  // default); false treats them as plain text, for untrusted data.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = true) const {
    return encode_impl(text, add_special, parse_special);
  }
  // Ids to text; invalid UTF-8 produced by partial byte tokens becomes U+FFFD. An id outside
  // [0, vocab_size()) throws std::out_of_range.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return decode_impl(ids, skip_special);
  }

  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  // The token's vocabulary string (byte-level characters for BPE, "▁" pieces for SPM); throws
  // std::out_of_range for an unknown id.
  virtual std::string id_to_token(int32_t id) const = 0;
  // One past the largest id (model vocabulary and added tokens together).
  virtual int32_t vocab_size() const = 0;
  // Special/control tokens (skipped by decode(..., skip_special=true)).
  virtual bool is_special(int32_t id) const = 0;

  std::optional<int32_t> bos_id() const { return special_.bos; }
  std::optional<int32_t> eos_id() const { return special_.eos; }
  std::optional<int32_t> unk_id() const { return special_.unk; }
  std::optional<int32_t> pad_id() const { return special_.pad; }
  // Overrides the ids that the file did not state (e.g. from a model config).
  void set_special_ids(const SpecialTokenIds& ids) { special_ = ids; }

 protected:
  virtual std::vector<int32_t> encode_impl(std::string_view text, bool add_special,
                                           bool parse_special) const = 0;
  virtual std::string decode_impl(const std::vector<int32_t>& ids, bool skip_special) const = 0;

  SpecialTokenIds special_;
};

// Loads a tokenizer by file: "tokenizer.json" (HF tokenizers, byte-level BPE; a
// tokenizer_config.json beside it supplies bos/eos/pad), a SentencePiece ".model", or a
// directory holding one of them. Throws std::runtime_error naming the path otherwise.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Turns a stream of generated ids into text pieces that never split a UTF-8 character: each
// push returns the text that became complete (possibly empty).
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = true)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}
  std::string push(int32_t id);
  // Whatever is still pending (an incomplete character comes out as U+FFFD).
  std::string finish();

 private:
  // Tokens kept pending while the text ends in U+FFFD; beyond that the U+FFFD is taken to be
  // real text (a UTF-8 character needs at most 4 byte tokens).
  static constexpr size_t kMaxPending = 8;
  const Tokenizer& tokenizer_;
  bool skip_special_;
  // ids_[prefix_begin_, read_begin_) were already emitted and give context so that decoders
  // that depend on neighbours (SentencePiece's leading space) render the new tail correctly.
  std::vector<int32_t> ids_;
  size_t prefix_begin_ = 0, read_begin_ = 0;
};

}  // namespace qat::data
