// llama specifics of GGUF: HF <-> GGUF tensor names, and the Q/K row permutation.
//
// HF's llama rotates pairs (i, i + hd/2) of each head; ggml's rope rotates adjacent pairs
// (2i, 2i+1). convert_hf_to_gguf.py therefore permutes the rows of q_proj (with n_head) and
// k_proj (with n_head_kv): within each head of hd rows, new_row[2i + j] = old_row[j*hd/2 + i]
// (i < hd/2, j in {0, 1}). Quant blocks run along `in`, so the permutation moves whole rows and
// applies unchanged to rows of packed blocks (codes and scales move together) and to biases.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

namespace qat::io {

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight", etc. (see the .cpp table);
// nullopt for a name without a GGUF counterpart (e.g. rotary_emb.inv_freq).
std::optional<std::string> hf_to_gguf_name(const std::string& hf);
// The inverse: "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight".
std::optional<std::string> gguf_to_hf_name(const std::string& gguf);

// HF -> GGUF row order of a q/k weight, bias, or packed block rows: rows is [n_heads * hd, ...]
// with hd even (checked, c10::Error naming the sizes). Pass n_head for q, n_head_kv for k.
at::Tensor permute_qk(const at::Tensor& rows, int64_t n_heads);
// GGUF -> HF: the inverse, unpermute_qk(permute_qk(w, n), n) == w.
at::Tensor unpermute_qk(const at::Tensor& rows, int64_t n_heads);

}  // namespace qat::io
