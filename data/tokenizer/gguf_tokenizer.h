// Tokenizers built from GGUF "tokenizer.*" metadata, independent of any GGUF reader: the caller
// passes the arrays. "gpt2" models become byte-level BPE with the pre-tokenizer llama.cpp picks
// for tokenizer.ggml.pre; "llama" models become SentencePiece.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/tokenizer/tokenizer.h"

namespace qat::data {

// GGUF token types (tokenizer.ggml.token_type).
enum class GgufTokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct GgufTokenizerData {
  std::string model;                 // tokenizer.ggml.model: "gpt2" or "llama"
  std::string pre;                   // tokenizer.ggml.pre (gpt2 only; empty = absent)
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type (empty: all normal)
  std::vector<std::string> merges;   // tokenizer.ggml.merges, "left right" (gpt2)
  std::vector<float> scores;         // tokenizer.ggml.scores (llama)
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id;
  bool add_bos = false;                  // tokenizer.ggml.add_bos_token
  bool add_eos = false;                  // tokenizer.ggml.add_eos_token
  std::optional<bool> add_space_prefix;  // tokenizer.ggml.add_space_prefix (llama)
};

// The pre-tokenizer regexes for a tokenizer.ggml.pre name, in the order they are applied (each
// splits the pieces of the previous one; a ByteLevel mapping without regex follows). Throws
// std::invalid_argument naming the pre name and the supported ones when it is unknown.
std::vector<std::string> gguf_pre_regexes(const std::string& pre);

// Builds the tokenizer; throws std::invalid_argument naming the GGUF key that is inconsistent
// (array lengths, ids out of range, unknown model or pre name).
std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GgufTokenizerData& data);

}  // namespace qat::data
