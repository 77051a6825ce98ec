#include "qat/models/llama.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include "qat/models/rope.h"
#include "qat/nn/checkpoint.h"

namespace qat::models {
namespace {

// A dense projection with transformers' initialisation (normal(0, 0.02), zero bias).
std::shared_ptr<nn::LinearBase> make_linear(int64_t in, int64_t out, bool bias,
                                            torch::TensorOptions options) {
  auto layer = std::make_shared<nn::Linear>(in, out, bias, options);
  torch::NoGradGuard no_grad;
  for (auto& p : layer->named_parameters()) {
    if (p.key() == "weight") p.value().normal_(0.0, 0.02);
    if (p.key() == "bias") p.value().zero_();
  }
  return layer;
}

// Boolean attention mask (T, S), true where query t (at position start + t) may see key s:
// causal, and within the sliding window when there is one (keep s > t_pos - window).
at::Tensor attention_mask(int64_t start, int64_t t_len, int64_t s_len, int64_t window,
                          const at::Device& device) {
  const auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  const at::Tensor q = at::arange(start, start + t_len, opts).unsqueeze(1);
  const at::Tensor k = at::arange(0, s_len, opts).unsqueeze(0);
  at::Tensor mask = k <= q;
  if (window > 0) mask = mask.logical_and(k > q - window);
  return mask;
}

}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim, double eps, torch::TensorOptions options) : eps_(eps) {
  weight_ = register_parameter("weight", torch::ones({dim}, options));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  const at::Tensor normed = xf * at::rsqrt(variance + eps_);
  return weight_ * normed.to(x.scalar_type());
}

KVCache::KVCache(const LlamaConfig& cfg, int64_t batch, int64_t max_len,
                 torch::TensorOptions options) {
  TORCH_CHECK(batch > 0 && max_len > 0, "KVCache: batch and max_length must be > 0, got ", batch,
              " and ", max_len);
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    keys.push_back(at::zeros({batch, cfg.num_key_value_heads, max_len, cfg.head_dim}, options));
    values.push_back(at::zeros_like(keys.back()));
  }
}

LlamaAttention::LlamaAttention(const LlamaConfig& cfg, int64_t layer, torch::TensorOptions options)
    : layer_(layer),
      heads_(cfg.num_attention_heads),
      kv_heads_(cfg.num_key_value_heads),
      head_dim_(cfg.head_dim),
      window_(cfg.window(layer)) {
  const int64_t h = cfg.hidden_size;
  q_proj_ = make_linear(h, heads_ * head_dim_, cfg.qkv_bias, options);
  k_proj_ = make_linear(h, kv_heads_ * head_dim_, cfg.qkv_bias, options);
  v_proj_ = make_linear(h, kv_heads_ * head_dim_, cfg.qkv_bias, options);
  o_proj_ = make_linear(heads_ * head_dim_, h, cfg.o_bias, options);
  register_linear("q_proj", q_proj_);
  register_linear("k_proj", k_proj_);
  register_linear("v_proj", v_proj_);
  register_linear("o_proj", o_proj_);
}

at::Tensor LlamaAttention::forward(const at::Tensor& x, const ForwardContext& ctx) {
  const int64_t b = x.size(0), t = x.size(1);
  // (B, T, H*D) -> (B, H, T, D)
  at::Tensor q = q_proj_->forward(x).view({b, t, heads_, head_dim_}).transpose(1, 2);
  at::Tensor k = k_proj_->forward(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
  at::Tensor v = v_proj_->forward(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
  q = apply_rope(q, ctx.cos, ctx.sin);
  k = apply_rope(k, ctx.cos, ctx.sin);

  int64_t s = t;  // keys visible to this call
  if (ctx.cache) {
    KVCache& c = *ctx.cache;
    TORCH_CHECK(ctx.start + t <= c.max_length(), "KV cache is full: ", ctx.start, " cached + ", t,
                " new tokens exceed its max_length ", c.max_length());
    TORCH_CHECK(c.keys[layer_].size(0) == b, "KV cache batch ", c.keys[layer_].size(0),
                " does not match the input batch ", b);
    c.keys[layer_].narrow(2, ctx.start, t).copy_(k);
    c.values[layer_].narrow(2, ctx.start, t).copy_(v);
    s = ctx.start + t;
    k = c.keys[layer_].narrow(2, 0, s);
    v = c.values[layer_].narrow(2, 0, s);
  }

  // The common shapes avoid a materialised mask: a fresh causal block (is_causal aligns the
  // diagonal top-left, right only when there is no prefix), or one query that may see all keys.
  std::optional<at::Tensor> mask;
  bool causal = false;
  const bool window_bites = window_ > 0 && s > window_;
  if (ctx.mask.defined()) {
    mask = window_bites ? ctx.mask & attention_mask(0, t, s, window_, x.device()) : ctx.mask;
  } else if (ctx.start == 0 && !window_bites) {
    causal = t > 1;
  } else if (!(t == 1 && !window_bites)) {
    mask = attention_mask(ctx.start, t, s, window_, x.device());
  }
  const at::Tensor out = at::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, std::nullopt,
                                                          /*enable_gqa=*/kv_heads_ != heads_);
  return o_proj_->forward(out.transpose(1, 2).reshape({b, t, heads_ * head_dim_}));
}

LlamaMLP::LlamaMLP(const LlamaConfig& cfg, torch::TensorOptions options) {
  gate_proj_ = make_linear(cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias, options);
  up_proj_ = make_linear(cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias, options);
  down_proj_ = make_linear(cfg.intermediate_size, cfg.hidden_size, cfg.mlp_bias, options);
  register_linear("gate_proj", gate_proj_);
  register_linear("up_proj", up_proj_);
  register_linear("down_proj", down_proj_);
}

at::Tensor LlamaMLP::forward(const at::Tensor& x) {
  return down_proj_->forward(at::silu(gate_proj_->forward(x)) * up_proj_->forward(x));
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& cfg, int64_t layer,
                                     torch::TensorOptions options) {
  self_attn_ = register_module("self_attn", std::make_shared<LlamaAttention>(cfg, layer, options));
  mlp_ = register_module("mlp", std::make_shared<LlamaMLP>(cfg, options));
  input_layernorm_ =
      register_module("input_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, options));
  post_attention_layernorm_ = register_module("post_attention_layernorm",
                                              RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, options));
}

at::Tensor LlamaDecoderLayer::forward(const at::Tensor& x, const ForwardContext& ctx) {
  const at::Tensor h = x + self_attn_->forward(input_layernorm_->forward(x), ctx);
  return h + mlp_->forward(post_attention_layernorm_->forward(h));
}

LlamaModel::LlamaModel(const LlamaConfig& cfg, torch::TensorOptions options) : cfg_(cfg) {
  cfg_.validate();
  torch::nn::EmbeddingOptions embed(cfg.vocab_size, cfg.hidden_size);
  // A streamed load (qat/models/loader.h) builds on the meta device: no memory, no draws.
  const bool meta = options.device().is_meta();
  if (meta) embed._weight(at::empty({cfg.vocab_size, cfg.hidden_size}, options));
  embed_tokens_ = register_module("embed_tokens", torch::nn::Embedding(embed));
  if (!meta) {
    torch::NoGradGuard no_grad;
    embed_tokens_->weight.set_data(embed_tokens_->weight.to(options).normal_(0.0, 0.02));
  }
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    layers_->push_back(std::make_shared<LlamaDecoderLayer>(cfg, i, options));
  }
  norm_ = register_module("norm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, options));
  inv_freq_ = rope_inv_freq(cfg_);
}

std::shared_ptr<LlamaDecoderLayer> LlamaModel::layer(int64_t i) const {
  return layers_->ptr<LlamaDecoderLayer>(static_cast<size_t>(i));
}

ForwardContext LlamaModel::context(const at::Tensor& input_ids, KVCache* cache,
                                   const std::optional<at::Tensor>& positions,
                                   const PackedInputs* packed) {
  TORCH_CHECK(input_ids.dim() == 2 && input_ids.scalar_type() == at::kLong,
              "LlamaModel: input_ids must be a (batch, seq) int64 tensor, got ", input_ids.sizes(),
              " ", input_ids.scalar_type());
  const int64_t t = input_ids.size(1);
  TORCH_CHECK(t > 0, "LlamaModel: empty input sequence");
  ForwardContext ctx;
  ctx.cache = cache;
  ctx.start = cache ? cache->length : 0;
  const at::Device device = embed_tokens_->weight.device();
  if (inv_freq_.device() != device) inv_freq_ = inv_freq_.to(device);
  if (packed != nullptr) {
    const int64_t b = input_ids.size(0);
    TORCH_CHECK(cache == nullptr && !positions,
                "LlamaModel: packed inputs take no cache or positions");
    TORCH_CHECK(packed->positions.sizes() == input_ids.sizes() &&
                    packed->segments.sizes() == input_ids.sizes(),
                "LlamaModel: packed positions and segments must be (", b, ", ", t,
                ") like input_ids, got ", packed->positions.sizes(), " and ",
                packed->segments.sizes());
    const at::Tensor pos = packed->positions.to(device, at::kLong).reshape({-1});
    std::tie(ctx.cos, ctx.sin) = rope_cos_sin(inv_freq_, pos);
    ctx.cos = ctx.cos.view({b, 1, t, -1});
    ctx.sin = ctx.sin.view({b, 1, t, -1});
    const at::Tensor seg = packed->segments.to(device, at::kLong);
    const at::Tensor causal =
        at::ones({t, t}, at::TensorOptions().dtype(at::kBool).device(device)).tril();
    ctx.mask = (seg.unsqueeze(2) == seg.unsqueeze(1)).logical_and(causal).unsqueeze(1);
  } else {
    const at::Tensor pos = positions
                               ? positions->to(device, at::kLong)
                               : at::arange(ctx.start, ctx.start + t,
                                            at::TensorOptions().dtype(at::kLong).device(device));
    TORCH_CHECK(pos.dim() == 1 && pos.size(0) == t, "LlamaModel: positions must be (", t, "), got ",
                pos.sizes());
    std::tie(ctx.cos, ctx.sin) = rope_cos_sin(inv_freq_, pos);
  }
  return ctx;
}

at::Tensor LlamaModel::forward(const at::Tensor& input_ids, KVCache* cache,
                               const std::optional<at::Tensor>& positions,
                               const PackedInputs* packed) {
  const ForwardContext ctx = context(input_ids, cache, positions, packed);
  const int64_t t = input_ids.size(1);
  at::Tensor h = embed_tokens_->forward(input_ids.to(embed_tokens_->weight.device()));
  const bool checkpoint = checkpointing_ && is_training() && at::GradMode::is_enabled() && !cache;
  for (size_t i = 0; i < layers_->size(); ++i) {
    auto layer = layers_->ptr<LlamaDecoderLayer>(i);
    if (checkpoint) {
      // ctx is captured by value: backward re-runs the layer after this function has returned.
      h = nn::checkpoint([layer, ctx](const at::Tensor& x) { return layer->forward(x, ctx); }, h,
                         layer->parameters());
    } else {
      h = layer->forward(h, ctx);
    }
  }
  if (cache) cache->length += t;
  return norm_->forward(h);
}

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& cfg, torch::TensorOptions options)
    : cfg_(cfg) {
  model_ = register_module("model", std::make_shared<LlamaModel>(cfg, options));
  if (!cfg.tie_word_embeddings) {
    lm_head_ = make_linear(cfg.hidden_size, cfg.vocab_size, /*bias=*/false, options);
    register_linear("lm_head", lm_head_);
  }
}

at::Tensor LlamaForCausalLM::logits(const at::Tensor& hidden) {
  if (lm_head_) return lm_head_->forward(hidden);
  return at::linear(hidden, model_->embed_tokens()->weight);
}

at::Tensor LlamaForCausalLM::forward(const at::Tensor& input_ids, KVCache* cache,
                                     const std::optional<at::Tensor>& positions,
                                     const PackedInputs* packed) {
  return logits(model_->forward(input_ids, cache, positions, packed));
}

KVCache LlamaForCausalLM::make_cache(int64_t batch, int64_t max_length) const {
  const at::Tensor& w = model_->embed_tokens()->weight;
  return KVCache(cfg_, batch, max_length, w.options().requires_grad(false));
}

std::map<std::string, at::Tensor> state_dict(const torch::nn::Module& model) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : model.named_parameters()) out[p.key()] = p.value();
  for (const auto& b : model.named_buffers()) out[b.key()] = b.value();
  return out;
}

void load_state_dict(torch::nn::Module& model, const std::map<std::string, at::Tensor>& tensors,
                     bool allow_unexpected) {
  torch::NoGradGuard no_grad;
  auto targets = state_dict(model);
  std::vector<std::string> missing, unexpected;
  for (auto& [name, dst] : targets) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
      continue;
    }
    TORCH_CHECK(it->second.sizes() == dst.sizes(), "load_state_dict: '", name, "' has shape ",
                it->second.sizes(), " in the checkpoint but ", dst.sizes(), " in the model");
    dst.copy_(it->second);
  }
  const auto embed = targets.find("model.embed_tokens.weight");
  for (const auto& [name, t] : tensors) {
    if (targets.count(name)) continue;
    if (is_tied_head_copy(name, t, embed == targets.end() ? at::Tensor() : embed->second)) continue;
    unexpected.push_back(name);
  }
  check_checkpoint_names("load_state_dict", missing,
                         allow_unexpected ? std::vector<std::string>() : unexpected);
}

bool is_tied_head_copy(const std::string& name, const at::Tensor& t, const at::Tensor& embed) {
  return name == "lm_head.weight" && embed.defined() && t.sizes() == embed.sizes() &&
         at::equal(t.to(embed.options()), embed);
}

void check_checkpoint_names(const std::string& origin, const std::vector<std::string>& missing,
                            const std::vector<std::string>& unexpected) {
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 8) s += ", ... (" + std::to_string(v.size()) + " in all)";
    return s;
  };
  TORCH_CHECK(missing.empty(), origin, ": the checkpoint lacks ", missing.size(),
              " tensor(s) the model needs: ", join(missing));
  TORCH_CHECK(unexpected.empty(), origin, ": the checkpoint has ", unexpected.size(),
              " tensor(s) the model does not: ", join(unexpected),
              " (is the config right? tie_word_embeddings, biases, layer count)");
}

}  // namespace qat::models
