// Builds a Llama-family model from the files users bring: a Hugging Face directory (config.json +
// safetensors, single or sharded) or a llama.cpp GGUF file (config from the metadata, weights
// dequantized on load, Q/K rows brought back from ggml's order to transformers').
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>

#include "qat/models/llama.h"

namespace qat::io {
class GgufFile;
class GgufMetadata;
}  // namespace qat::io

namespace qat::models {

std::shared_ptr<LlamaForCausalLM> load_hf_model(const std::string& dir,
                                                torch::TensorOptions options = {});

// The model shape from GGUF metadata (architectures "llama" and "qwen2"). `has_tensor` answers
// whether the file holds a tensor (ties and biases are told by which tensors exist).
LlamaConfig config_from_gguf(const io::GgufMetadata& metadata,
                             const std::function<bool(const std::string&)>& has_tensor,
                             const std::string& origin);
std::shared_ptr<LlamaForCausalLM> load_gguf_model(const std::string& path,
                                                  torch::TensorOptions options = {});
std::shared_ptr<LlamaForCausalLM> load_gguf_model(const io::GgufFile& file,
                                                  torch::TensorOptions options = {});

// A directory is read as a Hugging Face checkpoint, a *.gguf file as GGUF.
std::shared_ptr<LlamaForCausalLM> load_model(const std::string& path,
                                             torch::TensorOptions options = {});

}  // namespace qat::models
