#include "qat/models/llama_config.h"

#include <c10/util/Exception.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace qat::models {
namespace {

using nlohmann::json;

// Reads an optional key with a type check that names the file and the key.
template <typename T>
std::optional<T> get_opt(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if constexpr (std::is_same_v<T, bool>) {
    TORCH_CHECK(it->is_boolean(), source, ": '", key, "' must be a boolean, found ", it->dump());
  } else if constexpr (std::is_integral_v<T>) {
    TORCH_CHECK(it->is_number_integer(), source, ": '", key, "' must be an integer, found ",
                it->dump());
  } else if constexpr (std::is_floating_point_v<T>) {
    TORCH_CHECK(it->is_number(), source, ": '", key, "' must be a number, found ", it->dump());
  } else {
    TORCH_CHECK(it->is_string(), source, ": '", key, "' must be a string, found ", it->dump());
  }
  return it->get<T>();
}

template <typename T>
T get_req(const json& j, const char* key, const std::string& source) {
  auto v = get_opt<T>(j, key, source);
  TORCH_CHECK(v.has_value(), source, ": required key '", key, "' is missing");
  return *v;
}

// bos/eos ids may be an int or a list of ints (Llama 3.1 lists several eos ids): take the first.
std::optional<int64_t> get_token_id(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_array() && !it->empty()) it = it->begin();
  TORCH_CHECK(it->is_number_integer(), source, ": '", key, "' must be an integer token id, found ",
              it->dump());
  return it->get<int64_t>();
}

RopeScaling parse_rope(const json& r, const std::string& source) {
  RopeScaling s;
  TORCH_CHECK(r.is_object(), source, ": rope parameters must be an object, found ", r.dump());
  auto type = get_opt<std::string>(r, "rope_type", source);
  if (!type) type = get_opt<std::string>(r, "type", source);  // transformers < 4.45 name
  s.type = type.value_or("default");
  TORCH_CHECK(s.type == "default" || s.type == "linear" || s.type == "llama3", source,
              ": rope_type '", s.type, "' is not supported (supported: default, linear, llama3)");
  s.factor = get_opt<double>(r, "factor", source).value_or(1.0);
  s.low_freq_factor = get_opt<double>(r, "low_freq_factor", source).value_or(1.0);
  s.high_freq_factor = get_opt<double>(r, "high_freq_factor", source).value_or(4.0);
  s.original_max_position_embeddings =
      get_opt<int64_t>(r, "original_max_position_embeddings", source).value_or(8192);
  return s;
}

}  // namespace

LlamaConfig LlamaConfig::from_hf_json(const json& j, const std::string& source) {
  TORCH_CHECK(j.is_object(), source, ": expected a JSON object");
  LlamaConfig c;
  c.model_type = get_req<std::string>(j, "model_type", source);
  TORCH_CHECK(c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2",
              source, ": model_type '", c.model_type,
              "' is not supported (supported: llama, mistral, qwen2)");
  const std::string act = get_opt<std::string>(j, "hidden_act", source).value_or("silu");
  TORCH_CHECK(act == "silu", source, ": hidden_act '", act, "' is not supported (only silu)");
  c.vocab_size = get_req<int64_t>(j, "vocab_size", source);
  c.hidden_size = get_req<int64_t>(j, "hidden_size", source);
  c.intermediate_size = get_req<int64_t>(j, "intermediate_size", source);
  c.num_hidden_layers = get_req<int64_t>(j, "num_hidden_layers", source);
  c.num_attention_heads = get_req<int64_t>(j, "num_attention_heads", source);
  c.num_key_value_heads =
      get_opt<int64_t>(j, "num_key_value_heads", source).value_or(c.num_attention_heads);
  TORCH_CHECK(c.num_attention_heads > 0, source, ": num_attention_heads must be > 0");
  c.head_dim =
      get_opt<int64_t>(j, "head_dim", source).value_or(c.hidden_size / c.num_attention_heads);
  c.max_position_embeddings = get_opt<int64_t>(j, "max_position_embeddings", source).value_or(2048);
  c.rms_norm_eps = get_opt<double>(j, "rms_norm_eps", source).value_or(1e-6);
  c.tie_word_embeddings = get_opt<bool>(j, "tie_word_embeddings", source).value_or(false);

  // Rope: transformers >= 5 writes `rope_parameters` (with rope_theta inside); older versions
  // write `rope_theta` and an optional `rope_scaling` object.
  c.rope_theta = get_opt<double>(j, "rope_theta", source).value_or(10000.0);
  if (auto it = j.find("rope_parameters"); it != j.end() && !it->is_null()) {
    c.rope_scaling = parse_rope(*it, source);
    c.rope_theta = get_opt<double>(*it, "rope_theta", source).value_or(c.rope_theta);
  } else if (auto it2 = j.find("rope_scaling"); it2 != j.end() && !it2->is_null()) {
    c.rope_scaling = parse_rope(*it2, source);
  }

  if (c.model_type == "qwen2") {
    c.qkv_bias = true;  // Qwen2's q/k/v projections always carry a bias, o_proj never
  } else {
    const bool attention_bias = get_opt<bool>(j, "attention_bias", source).value_or(false);
    c.qkv_bias = c.o_bias = attention_bias;
  }
  c.mlp_bias = get_opt<bool>(j, "mlp_bias", source).value_or(false);

  // Sliding windows: Mistral applies `sliding_window` to every layer when set; Qwen2 only with
  // use_sliding_window, on the layers that `layer_types` marks "sliding_attention".
  const int64_t window = get_opt<int64_t>(j, "sliding_window", source).value_or(0);
  const bool use_window = c.model_type == "mistral"
                              ? window > 0
                              : get_opt<bool>(j, "use_sliding_window", source).value_or(false);
  if (use_window && window > 0) {
    c.sliding_window.assign(static_cast<size_t>(c.num_hidden_layers), window);
    if (auto lt = j.find("layer_types"); lt != j.end() && lt->is_array()) {
      TORCH_CHECK(static_cast<int64_t>(lt->size()) == c.num_hidden_layers, source,
                  ": layer_types has ", lt->size(), " entries for ", c.num_hidden_layers,
                  " layers");
      for (size_t i = 0; i < lt->size(); ++i) {
        const std::string t = (*lt)[i].is_string() ? (*lt)[i].get<std::string>() : "";
        TORCH_CHECK(t == "full_attention" || t == "sliding_attention", source, ": layer_types[", i,
                    "] must be full_attention or sliding_attention, found ", (*lt)[i].dump());
        if (t == "full_attention") c.sliding_window[i] = 0;
      }
    }
  }
  c.bos_token_id = get_token_id(j, "bos_token_id", source);
  c.eos_token_id = get_token_id(j, "eos_token_id", source);
  c.pad_token_id = get_token_id(j, "pad_token_id", source);
  c.validate();
  return c;
}

LlamaConfig LlamaConfig::from_hf_file(const std::string& path) {
  std::ifstream f(path);
  TORCH_CHECK(f, "cannot open model config '", path, "'");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    TORCH_CHECK(false, path, ": not valid JSON: ", e.what());
  }
  return from_hf_json(j, path);
}

json LlamaConfig::to_hf_json() const {
  json rope = {{"rope_theta", rope_theta}, {"rope_type", rope_scaling.type}};
  if (rope_scaling.type != "default") rope["factor"] = rope_scaling.factor;
  if (rope_scaling.type == "llama3") {
    rope["low_freq_factor"] = rope_scaling.low_freq_factor;
    rope["high_freq_factor"] = rope_scaling.high_freq_factor;
    rope["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
  }
  const char* arch = model_type == "qwen2"     ? "Qwen2ForCausalLM"
                     : model_type == "mistral" ? "MistralForCausalLM"
                                               : "LlamaForCausalLM";
  json j = {{"architectures", {arch}},
            {"model_type", model_type},
            {"hidden_act", "silu"},
            {"vocab_size", vocab_size},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"num_hidden_layers", num_hidden_layers},
            {"num_attention_heads", num_attention_heads},
            {"num_key_value_heads", num_key_value_heads},
            {"head_dim", head_dim},
            {"max_position_embeddings", max_position_embeddings},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_theta", rope_theta},
            {"rope_parameters", rope},
            {"tie_word_embeddings", tie_word_embeddings},
            {"mlp_bias", mlp_bias}};
  if (rope_scaling.type != "default") {
    json legacy = rope;
    legacy.erase("rope_theta");
    j["rope_scaling"] = legacy;
  }
  if (model_type != "qwen2") j["attention_bias"] = qkv_bias;
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_id) j["eos_token_id"] = *eos_token_id;
  if (pad_token_id) j["pad_token_id"] = *pad_token_id;
  if (!sliding_window.empty()) {
    int64_t w = 0;
    json types = json::array();
    for (int64_t s : sliding_window) {
      w = std::max(w, s);
      types.push_back(s > 0 ? "sliding_attention" : "full_attention");
    }
    j["sliding_window"] = w;
    if (model_type == "qwen2") j["use_sliding_window"] = true;
    j["layer_types"] = types;
  }
  return j;
}

void LlamaConfig::validate() const {
  auto positive = [](int64_t v, const char* name) {
    TORCH_CHECK(v > 0, "model config: ", name, " must be > 0, got ", v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(max_position_embeddings, "max_position_embeddings");
  TORCH_CHECK(num_attention_heads % num_key_value_heads == 0, "model config: num_attention_heads (",
              num_attention_heads, ") must be a multiple of num_key_value_heads (",
              num_key_value_heads, ")");
  TORCH_CHECK(head_dim % 2 == 0, "model config: head_dim must be even for rotary embeddings, got ",
              head_dim);
  TORCH_CHECK(rms_norm_eps > 0, "model config: rms_norm_eps must be > 0, got ", rms_norm_eps);
  TORCH_CHECK(rope_theta > 0, "model config: rope_theta must be > 0, got ", rope_theta);
  TORCH_CHECK(rope_scaling.factor > 0, "model config: rope factor must be > 0, got ",
              rope_scaling.factor);
  if (rope_scaling.type == "llama3") {
    TORCH_CHECK(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor,
                "model config: llama3 rope needs high_freq_factor > low_freq_factor, got ",
                rope_scaling.high_freq_factor, " and ", rope_scaling.low_freq_factor);
  }
  TORCH_CHECK(
      sliding_window.empty() || static_cast<int64_t>(sliding_window.size()) == num_hidden_layers,
      "model config: sliding_window must list one window per layer");
}

int64_t LlamaConfig::num_parameters() const {
  const int64_t q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attn = hidden_size * (q + 2 * kv) + q * hidden_size;
  if (qkv_bias) attn += q + 2 * kv;
  if (o_bias) attn += hidden_size;
  int64_t mlp = 3 * hidden_size * intermediate_size;
  if (mlp_bias) mlp += 2 * intermediate_size + hidden_size;
  const int64_t layer = attn + mlp + 2 * hidden_size;
  const int64_t embed = vocab_size * hidden_size;
  return embed * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * layer + hidden_size;
}

}  // namespace qat::models
