// A Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM) in libtorch. Module and parameter
// names follow transformers ("model.layers.0.self_attn.q_proj.weight"), so prepare()'s name rules,
// HF checkpoints and PEFT adapter keys line up without renaming. Every projection sits in a
// swappable slot (nn::ModuleWithLinears) so prepare()/convert() and LoRA can replace it.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

#include <memory>
#include <optional>

#include "qat/models/llama_config.h"
#include "qat/nn/linear.h"

namespace qat::models {

// y = w * (x / sqrt(mean(x^2) + eps)), computed in float32 and cast back, as transformers does.
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, torch::TensorOptions options = {});
  at::Tensor forward(const at::Tensor& x);
  const at::Tensor& weight() const { return weight_; }

 private:
  at::Tensor weight_;  // (dim,)
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Keys and values of every layer for incremental decoding, preallocated to `max_length`.
struct KVCache {
  KVCache(const LlamaConfig& cfg, int64_t batch, int64_t max_length, torch::TensorOptions options);
  std::vector<at::Tensor> keys, values;  // per layer: (B, kv_heads, max_length, head_dim)
  int64_t length = 0;                    // positions filled so far
  int64_t max_length() const { return keys.empty() ? 0 : keys[0].size(2); }
};

// Packed training sequences: several documents per row. positions (B, T) restart at 0 in each
// document; segments (B, T) number the documents in a row (padding: -1). Attention stays inside
// a document: a block-diagonal causal mask built from the segments.
struct PackedInputs {
  at::Tensor positions, segments;
};

// What one forward needs besides the token ids.
struct ForwardContext {
  at::Tensor cos,
      sin;  // (T, head_dim) float32 rotary tables of the positions (B, 1, T, head_dim) when packed
  at::Tensor mask;           // packed: (B, 1, T, T) bool, true = may attend; undefined otherwise
  int64_t start = 0;         // position of the first query token (cache length before the call)
  KVCache* cache = nullptr;  // null: no cache
};

class LlamaAttention : public nn::ModuleWithLinears {
 public:
  LlamaAttention(const LlamaConfig& cfg, int64_t layer, torch::TensorOptions options);
  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx);

 private:
  int64_t layer_, heads_, kv_heads_, head_dim_, window_;
  std::shared_ptr<nn::LinearBase> q_proj_, k_proj_, v_proj_, o_proj_;
};

class LlamaMLP : public nn::ModuleWithLinears {
 public:
  LlamaMLP(const LlamaConfig& cfg, torch::TensorOptions options);
  at::Tensor forward(const at::Tensor& x);  // down(silu(gate(x)) * up(x))

 private:
  std::shared_ptr<nn::LinearBase> gate_proj_, up_proj_, down_proj_;
};

class LlamaDecoderLayer : public torch::nn::Module {
 public:
  LlamaDecoderLayer(const LlamaConfig& cfg, int64_t layer, torch::TensorOptions options);
  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx);

 private:
  std::shared_ptr<LlamaAttention> self_attn_;
  std::shared_ptr<LlamaMLP> mlp_;
  RMSNorm input_layernorm_{nullptr}, post_attention_layernorm_{nullptr};
};

// The stack without the output head: "model." in transformers' names.
class LlamaModel : public torch::nn::Module {
 public:
  LlamaModel(const LlamaConfig& cfg, torch::TensorOptions options);
  // input_ids (B, T) int64 -> hidden states (B, T, hidden). positions: (T,) int64, default
  // start..start+T-1 where start is the cache length (0 without a cache).
  // `packed` (training on packed sequences, no cache) replaces positions.
  at::Tensor forward(const at::Tensor& input_ids, KVCache* cache = nullptr,
                     const std::optional<at::Tensor>& positions = std::nullopt,
                     const PackedInputs* packed = nullptr);
  // What forward() passes each layer (rotary tables, packed mask, cache), for callers that run
  // the layers one by one (GPTQ): h = embed_tokens()(ids), then h = layer(i)->forward(h, ctx).
  ForwardContext context(const at::Tensor& input_ids, KVCache* cache = nullptr,
                         const std::optional<at::Tensor>& positions = std::nullopt,
                         const PackedInputs* packed = nullptr);
  torch::nn::Embedding& embed_tokens() { return embed_tokens_; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_->size()); }
  std::shared_ptr<LlamaDecoderLayer> layer(int64_t i) const;
  // Recompute each decoder layer in backward instead of storing its activations (training only).
  void set_activation_checkpointing(bool on) { checkpointing_ = on; }
  bool activation_checkpointing() const { return checkpointing_; }

 private:
  LlamaConfig cfg_;
  torch::nn::Embedding embed_tokens_{nullptr};
  torch::nn::ModuleList layers_{nullptr};
  RMSNorm norm_{nullptr};
  at::Tensor inv_freq_;  // (head_dim/2,) float32 buffer, not persistent in checkpoints
  bool checkpointing_ = false;
};

class LlamaForCausalLM : public nn::ModuleWithLinears {
 public:
  // Parameters are created uninitialised-but-finite (transformers' init: normal(0, 0.02) for
  // linears and embeddings, ones for norms); load weights with load_state_dict().
  explicit LlamaForCausalLM(const LlamaConfig& cfg, torch::TensorOptions options = {});
  // input_ids (B, T) -> logits (B, T, vocab) in the parameters' dtype.
  at::Tensor forward(const at::Tensor& input_ids, KVCache* cache = nullptr,
                     const std::optional<at::Tensor>& positions = std::nullopt,
                     const PackedInputs* packed = nullptr);
  // Logits for hidden states from model() (lets a trainer compute the loss in chunks).
  at::Tensor logits(const at::Tensor& hidden);

  const LlamaConfig& config() const { return cfg_; }
  LlamaModel& model() { return *model_; }
  // Null when the head is tied to the input embedding.
  std::shared_ptr<nn::LinearBase> lm_head() const { return lm_head_; }
  KVCache make_cache(int64_t batch, int64_t max_length) const;

 private:
  LlamaConfig cfg_;
  std::shared_ptr<LlamaModel> model_;
  std::shared_ptr<nn::LinearBase> lm_head_;
};

// Copies `tensors` (HF names) into the model's parameters and buffers, converting dtype. Every
// parameter must be present with the right shape; unexpected names are an error unless
// `allow_unexpected`. With tied embeddings, an "lm_head.weight" equal to the embedding is accepted.
void load_state_dict(torch::nn::Module& model, const std::map<std::string, at::Tensor>& tensors,
                     bool allow_unexpected = false);

// Whether `t` under `name` is a tied model's redundant head: transformers may still write
// lm_head.weight, a copy of the embedding `embed` (undefined: the model has none to compare).
bool is_tied_head_copy(const std::string& name, const at::Tensor& t, const at::Tensor& embed);
// Throws naming, after `origin`, the tensors a checkpoint lacks (`missing`) or holds beyond the
// model (`unexpected`); what load_state_dict() and a streamed load (loader.h) report.
void check_checkpoint_names(const std::string& origin, const std::vector<std::string>& missing,
                            const std::vector<std::string>& unexpected);

// name -> tensor of every parameter and persistent buffer, in HF names.
std::map<std::string, at::Tensor> state_dict(const torch::nn::Module& model);

}  // namespace qat::models
