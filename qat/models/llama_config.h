// The shape of a Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM), read from a Hugging
// Face config.json or from GGUF metadata, validated on construction.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

namespace qat::models {

// How rotary frequencies are rescaled for long context (HF `rope_parameters.rope_type`).
struct RopeScaling {
  std::string type = "default";  // "default", "linear" or "llama3"
  double factor = 1.0;
  // llama3 only: frequencies with wavelength above original/low_freq_factor are divided by
  // `factor`, those below original/high_freq_factor kept, the band between interpolated.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  std::string model_type = "llama";  // "llama", "mistral", "qwen2" (also SmolLM, which is llama)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless given
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2: always; Llama: attention_bias
  bool o_bias = false;    // Llama: attention_bias (Qwen2 has none on o_proj)
  bool mlp_bias = false;
  // Sliding-window attention per layer (Mistral, Qwen2 with use_sliding_window); 0 = full.
  std::vector<int64_t> sliding_window;
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id;

  // Parses a config.json object. `source` names the file in error messages.
  static LlamaConfig from_hf_json(const nlohmann::json& j,
                                  const std::string& source = "config.json");
  static LlamaConfig from_hf_file(const std::string& path);
  // The config.json transformers writes for this model (rope in the v5 `rope_parameters` form
  // plus the legacy `rope_theta`/`rope_scaling` keys, so v4 readers load it too).
  nlohmann::json to_hf_json() const;

  // Throws with the offending field when the numbers cannot describe a model.
  void validate() const;
  int64_t window(int64_t layer) const {
    return sliding_window.empty() ? 0 : sliding_window.at(static_cast<size_t>(layer));
  }
  int64_t num_parameters() const;
};

}  // namespace qat::models
