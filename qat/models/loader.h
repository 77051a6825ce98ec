// Builds a Llama-family model from the files users bring: a Hugging Face directory (config.json +
// safetensors, single or sharded) or a llama.cpp GGUF file (config from the metadata, weights
// dequantized on load, Q/K rows brought back from ggml's order to transformers').
//
// Streaming: given a `LinearVisitor`, the model is built without memory for its weights (on the
// meta device) and filled one tensor at a time. Each linear layer's weight (and bias) is read and
// materialized, then handed to the visitor, which may swap the layer in its slot (for QLoRA, for
// an NF4 layer quantized from it, transforms::nf4_swapper); the dense copy is freed when the
// layer is swapped. What is left (embeddings, norms, layers the visitor kept) is read afterwards.
// The model's full-precision weights therefore never exist at once: the peak is the model as it
// ends up plus one layer. The values equal the eager load's (same conversion, same order of
// swaps); the generator is not drawn from for the discarded initialisation, so random draws made
// after loading (LoRA adapters' init, dropout) differ from an eager load's.
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>

#include "qat/models/llama.h"
#include "qat/nn/module_walk.h"

namespace qat::io {
class GgufFile;
class GgufMetadata;
}  // namespace qat::io

namespace qat::models {

// Called for each linear once its weights are loaded (see the file comment); empty: load eagerly.
using LinearVisitor = nn::SlotVisitor;

std::shared_ptr<LlamaForCausalLM> load_hf_model(const std::string& dir,
                                                torch::TensorOptions options = {},
                                                const LinearVisitor& on_linear = {});

// The model shape from GGUF metadata (architectures "llama" and "qwen2"). `has_tensor` answers
// whether the file holds a tensor (ties and biases are told by which tensors exist).
LlamaConfig config_from_gguf(const io::GgufMetadata& metadata,
                             const std::function<bool(const std::string&)>& has_tensor,
                             const std::string& origin);
std::shared_ptr<LlamaForCausalLM> load_gguf_model(const std::string& path,
                                                  torch::TensorOptions options = {},
                                                  const LinearVisitor& on_linear = {});
std::shared_ptr<LlamaForCausalLM> load_gguf_model(const io::GgufFile& file,
                                                  torch::TensorOptions options = {},
                                                  const LinearVisitor& on_linear = {});

// A directory is read as a Hugging Face checkpoint, a *.gguf file as GGUF.
std::shared_ptr<LlamaForCausalLM> load_model(const std::string& path,
                                             torch::TensorOptions options = {},
                                             const LinearVisitor& on_linear = {});

}  // namespace qat::models
