// Language-modelling examples from raw documents: every token is in the loss, each document
// starts the way the tokenizer says (its BOS when its post-processing adds one) and ends with EOS.
#pragma once

#include <optional>
#include <vector>

#include "data/dataset/example.h"
#include "data/dataset/text_files.h"
#include "data/tokenizer/tokenizer.h"

namespace qat::data {

struct TextTokenizeOptions {
  // Append the end-of-document token after each document (unless the tokenizer already did).
  bool add_eos = true;
  // The EOS id to append; default: the tokenizer's eos_id() (an error when it has none).
  std::optional<int32_t> eos_id;
  // Special-token text inside documents ("<|im_end|>") is plain text by default: corpus text
  // must not inject control tokens.
  bool parse_special = false;
};

// Tokenizes each document with encode(text, add_special=true) (BOS per the tokenizer: Llama and
// SentencePiece models add it, SmolLM2's GGUF says add_bos_token=false) and appends EOS.
// labels == tokens. A tokenizer error is rethrown with the document's source.
std::vector<Example> tokenize_documents(const std::vector<Document>& documents,
                                        const Tokenizer& tokenizer,
                                        const TextTokenizeOptions& options = {});

}  // namespace qat::data
