// Rotary position embeddings as transformers computes them (rotate_half convention: dimension i
// pairs with i + head_dim/2), including the "linear" and Llama-3 frequency scalings.
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "qat/models/llama_config.h"

namespace qat::models {

// inv_freq[i] = 1 / theta^(2i/d) for i < d/2, float32, then rescaled by the config's rope type.
at::Tensor rope_inv_freq(const LlamaConfig& cfg);

// cos and sin tables for the given positions: (T, head_dim) float32 each, on inv_freq's device.
std::pair<at::Tensor, at::Tensor> rope_cos_sin(const at::Tensor& inv_freq,
                                               const at::Tensor& positions);

// x: (B, H, T, D); cos/sin: (T, D). Returns x*cos + rotate_half(x)*sin in x's dtype.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace qat::models
