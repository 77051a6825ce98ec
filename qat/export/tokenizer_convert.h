// Tokenizers between the two worlds export writes to: GGUF tokenizer.ggml.* metadata and HF
// tokenizer.json / tokenizer_config.json. Byte-level BPE only (what Llama-3, Qwen2, SmolLM and
// GPT-2 style models use); the pre-tokenizer is identified by name (tokenizer.ggml.pre) through
// the regexes of data::gguf_pre_regexes, so both sides split text identically.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "qat/export/export.h"
#include "qat/io/gguf_value.h"

namespace qat::exporting {

// The tokenizer.* keys a GGUF export writes: the source GGUF's as they are, or converted from an
// HF directory's tokenizer.json (byte-level BPE; ids padded with "[PAD<i>]" unused tokens up to
// vocab_size). Throws naming what cannot be converted.
io::GgufMetadata gguf_tokenizer_metadata(const TokenizerSource& tok, int64_t vocab_size = 0);

// tokenizer.json for a GGUF "gpt2" tokenizer: BPE vocab and merges, control/user-defined tokens
// as added tokens, the pre-tokenizer of tokenizer.ggml.pre (Split regexes + ByteLevel), a
// ByteLevel decoder, and a TemplateProcessing post-processor when add_bos/add_eos_token is set.
nlohmann::json tokenizer_json_from_gguf(const io::GgufMetadata& meta);
// tokenizer_config.json: bos/eos/unk/pad as strings, add_bos/eos_token, chat_template.
nlohmann::json tokenizer_config_from_gguf(const io::GgufMetadata& meta,
                                          const std::string& chat_template,
                                          int64_t model_max_length);

// The GGUF keys of an HF tokenizer.json (+ tokenizer_config.json) in `dir`; see above.
io::GgufMetadata gguf_tokenizer_from_hf(const std::string& dir, const std::string& chat_template,
                                        int64_t vocab_size);

}  // namespace qat::exporting
