#include "qat/io/gguf_llama.h"

#include <ATen/ATen.h>

#include <cctype>
#include <string_view>

namespace qat::io {

namespace {

struct NamePair {
  std::string_view hf;
  std::string_view gguf;
};

// Per-layer modules: "model.layers.N.<hf>" <-> "blk.N.<gguf>" (then ".weight" or ".bias").
constexpr NamePair kLayerNames[] = {
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {"input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "ffn_norm"},
};
// Whole-model modules.
constexpr NamePair kGlobalNames[] = {
    {"model.embed_tokens", "token_embd"}, {"model.norm", "output_norm"}, {"lm_head", "output"}};

constexpr std::string_view kHfLayer = "model.layers.";
constexpr std::string_view kGgufLayer = "blk.";

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// Splits "<stem>.weight" / "<stem>.bias"; false for other suffixes.
bool split_suffix(std::string_view name, std::string_view* stem, std::string_view* suffix) {
  for (std::string_view s : {std::string_view(".weight"), std::string_view(".bias")}) {
    if (name.size() > s.size() && name.substr(name.size() - s.size()) == s) {
      *stem = name.substr(0, name.size() - s.size());
      *suffix = s;
      return true;
    }
  }
  return false;
}

// "<prefix><digits>.<rest>" -> digits and rest.
bool split_layer(std::string_view stem, std::string_view prefix, std::string_view* layer,
                 std::string_view* rest) {
  if (!starts_with(stem, prefix)) return false;
  stem.remove_prefix(prefix.size());
  size_t n = 0;
  while (n < stem.size() && std::isdigit(static_cast<unsigned char>(stem[n]))) ++n;
  if (n == 0 || n >= stem.size() || stem[n] != '.') return false;
  *layer = stem.substr(0, n);
  *rest = stem.substr(n + 1);
  return true;
}

std::optional<std::string> map_name(const std::string& name, bool to_gguf) {
  std::string_view stem, suffix;
  if (!split_suffix(name, &stem, &suffix)) return std::nullopt;
  for (const NamePair& p : kGlobalNames) {
    if (stem == (to_gguf ? p.hf : p.gguf))
      return std::string(to_gguf ? p.gguf : p.hf) + std::string(suffix);
  }
  std::string_view layer, rest;
  if (!split_layer(stem, to_gguf ? kHfLayer : kGgufLayer, &layer, &rest)) return std::nullopt;
  for (const NamePair& p : kLayerNames) {
    if (rest == (to_gguf ? p.hf : p.gguf)) {
      return std::string(to_gguf ? kGgufLayer : kHfLayer) + std::string(layer) + "." +
             std::string(to_gguf ? p.gguf : p.hf) + std::string(suffix);
    }
  }
  return std::nullopt;
}

// The [n_heads, a, b, rest...] view of rows [n_heads * a * b, rest...].
std::vector<int64_t> head_view(const at::Tensor& rows, int64_t n_heads, int64_t a, int64_t b) {
  std::vector<int64_t> s{n_heads, a, b};
  for (int64_t d = 1; d < rows.dim(); ++d) s.push_back(rows.size(d));
  return s;
}

int64_t check_heads(const at::Tensor& rows, int64_t n_heads, const char* what) {
  TORCH_CHECK(rows.dim() >= 1, what,
              ": expected rows [n_heads * head_dim, ...], got a 0-dim tensor");
  TORCH_CHECK(n_heads > 0 && rows.size(0) % (2 * n_heads) == 0, what, ": ", rows.size(0),
              " rows do not split into ", n_heads, " heads of an even head_dim");
  return rows.size(0) / n_heads;
}

}  // namespace

std::optional<std::string> hf_to_gguf_name(const std::string& hf) {
  return map_name(hf, true);
}
std::optional<std::string> gguf_to_hf_name(const std::string& gguf) {
  return map_name(gguf, false);
}

// new_row[2i + j] = old_row[j*hd/2 + i]: view each head as [2, hd/2] (j, i) and read it as [hd/2,
// 2].
at::Tensor permute_qk(const at::Tensor& rows, int64_t n_heads) {
  const int64_t hd = check_heads(rows, n_heads, "permute_qk");
  return rows.reshape(head_view(rows, n_heads, 2, hd / 2))
      .transpose(1, 2)
      .reshape(rows.sizes())
      .contiguous();
}

at::Tensor unpermute_qk(const at::Tensor& rows, int64_t n_heads) {
  const int64_t hd = check_heads(rows, n_heads, "unpermute_qk");
  return rows.reshape(head_view(rows, n_heads, hd / 2, 2))
      .transpose(1, 2)
      .reshape(rows.sizes())
      .contiguous();
}

}  // namespace qat::io
