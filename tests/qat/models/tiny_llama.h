// A tiny Llama configuration for tests that need a whole decoder but not real weights.
#pragma once

#include "qat/models/llama_config.h"

namespace qat::test {

// 2 layers, hidden 32, 4 heads (2 kv heads, head_dim 8), ffn 64 (a multiple of the 32-groups).
inline models::LlamaConfig tiny_llama_config(int64_t vocab, bool qkv_bias, bool tied = false,
                                             int64_t window = 0) {
  models::LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.tie_word_embeddings = tied;
  c.qkv_bias = qkv_bias;
  if (window > 0) c.sliding_window.assign(2, window);
  c.validate();
  return c;
}

}  // namespace qat::test
