// Tokenizers between the two worlds export writes to: GGUF tokenizer.ggml.* metadata and HF
// tokenizer.json / tokenizer_config.json. Byte-level BPE only (what Llama-3, Qwen2, SmolLM and
// GPT-2 style models use); the pre-tokenizer is identified by name (tokenizer.ggml.pre) through
// the regexes of data::gguf_pre_regexes, so both sides split text identically.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

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

// The special ids of a tokenizer (GGUF keys), and the tokens that end generation as llama.cpp
// decides them (llama-vocab.cpp): eos, eot and eom, then every token whose text is one of its
// end-of-generation names (<|im_end|>, <|eot_id|>, <|endoftext|>, <end_of_turn>, ...), in that
// order, without repeats. Every export writes its stop settings from this one list.
struct StopTokens {
  std::optional<int64_t> bos, eos, pad;
  std::vector<int64_t> eog;           // ids
  std::vector<std::string> eog_text;  // their token texts
};
StopTokens stop_tokens(const io::GgufMetadata& tok);

// generation_config.json for an HF export whose source has none: bos, eos (every end-of-generation
// id: a list when there are several, as transformers' generate() takes it) and pad ids.
nlohmann::json generation_config(const StopTokens& stop);

// An Ollama Modelfile for `gguf_file` (a name beside the Modelfile): FROM, one stop parameter per
// end-of-generation token; a raw-prompt TEMPLATE only when the GGUF has no chat template (Ollama
// builds its template from the GGUF's tokenizer.chat_template otherwise).
std::string ollama_modelfile(const std::string& gguf_file, const StopTokens& stop,
                             bool has_chat_template);

}  // namespace qat::exporting
