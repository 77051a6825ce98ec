#include "qat/models/loader.h"

#include <filesystem>

#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "qat/io/safetensors_torch.h"

namespace qat::models {

namespace fs = std::filesystem;

std::shared_ptr<LlamaForCausalLM> load_hf_model(const std::string& dir,
                                                torch::TensorOptions options) {
  TORCH_CHECK(fs::is_directory(dir), "load_hf_model: '", dir, "' is not a directory");
  const fs::path config_path = fs::path(dir) / "config.json";
  TORCH_CHECK(fs::exists(config_path), "load_hf_model: '", dir, "' has no config.json");
  const LlamaConfig cfg = LlamaConfig::from_hf_file(config_path.string());
  auto model = std::make_shared<LlamaForCausalLM>(cfg, options);
  load_state_dict(*model, io::load_safetensors(dir));
  return model;
}

LlamaConfig config_from_gguf(const io::GgufMetadata& meta,
                             const std::function<bool(const std::string&)>& has_tensor,
                             const std::string& origin) {
  const std::string arch = meta.get_string("general.architecture");
  TORCH_CHECK(arch == "llama" || arch == "qwen2", origin, ": general.architecture '", arch,
              "' is not supported (supported: llama, qwen2)");
  // llama.cpp precomputes Llama-3 rope scaling into a rope_freqs tensor; we would have to undo it.
  TORCH_CHECK(!has_tensor("rope_freqs.weight"), origin,
              ": rope_freqs (Llama-3.1 style rope scaling baked into GGUF) is not supported yet; "
              "load the Hugging Face checkpoint instead");
  const std::string p = arch + ".";
  auto count = [&](const std::string& key) -> int64_t {
    // llama.cpp stores counts as UINT32; accept any integer type a writer may have used.
    const io::GgufValue& v = meta.at(p + key);
    if (v.type() == io::GgufValueType::kUint64) return static_cast<int64_t>(meta.get_u64(p + key));
    if (v.type() == io::GgufValueType::kInt32) return meta.get_i32(p + key);
    return meta.get_u32(p + key);
  };
  auto optional_count = [&](const std::string& key) -> std::optional<int64_t> {
    if (!meta.has(p + key)) return std::nullopt;
    return count(key);
  };

  LlamaConfig c;
  c.model_type = arch;
  c.hidden_size = count("embedding_length");
  c.intermediate_size = count("feed_forward_length");
  c.num_hidden_layers = count("block_count");
  c.num_attention_heads = count("attention.head_count");
  c.num_key_value_heads = optional_count("attention.head_count_kv").value_or(c.num_attention_heads);
  TORCH_CHECK(c.num_attention_heads > 0, origin, ": ", p, "attention.head_count must be > 0");
  c.head_dim =
      optional_count("attention.key_length").value_or(c.hidden_size / c.num_attention_heads);
  c.max_position_embeddings = optional_count("context_length").value_or(2048);
  c.rms_norm_eps = meta.get_f32(p + "attention.layer_norm_rms_epsilon");
  c.rope_theta = meta.get_optional<float>(p + "rope.freq_base").value_or(10000.0f);
  if (auto rope_dims = optional_count("rope.dimension_count")) {
    TORCH_CHECK(*rope_dims == c.head_dim, origin,
                ": partial rotary embeddings (rope.dimension_count ", *rope_dims, " != head dim ",
                c.head_dim, ") are not supported");
  }
  if (auto type = meta.get_string_optional(p + "rope.scaling.type"); type && *type != "none") {
    TORCH_CHECK(*type == "linear", origin, ": rope.scaling.type '", *type,
                "' is not supported (none, linear)");
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = meta.get_f32(p + "rope.scaling.factor");
  }
  if (auto v = optional_count("vocab_size")) {
    c.vocab_size = *v;
  } else {
    c.vocab_size = static_cast<int64_t>(meta.get_string_array("tokenizer.ggml.tokens").size());
  }
  c.tie_word_embeddings = !has_tensor("output.weight");
  c.qkv_bias = has_tensor("blk.0.attn_q.bias");
  c.o_bias = has_tensor("blk.0.attn_output.bias");
  c.mlp_bias = has_tensor("blk.0.ffn_up.bias");
  auto token = [&](const char* key) -> std::optional<int64_t> {
    if (!meta.has(key)) return std::nullopt;
    return static_cast<int64_t>(meta.get_u32(key));
  };
  c.bos_token_id = token("tokenizer.ggml.bos_token_id");
  c.eos_token_id = token("tokenizer.ggml.eos_token_id");
  c.pad_token_id = token("tokenizer.ggml.padding_token_id");
  c.validate();
  return c;
}

std::shared_ptr<LlamaForCausalLM> load_gguf_model(const std::string& path,
                                                  torch::TensorOptions options) {
  return load_gguf_model(io::GgufFile::open(path), options);
}

std::shared_ptr<LlamaForCausalLM> load_gguf_model(const io::GgufFile& file,
                                                  torch::TensorOptions options) {
  const std::string& path = file.path();
  const LlamaConfig cfg = config_from_gguf(
      file.metadata(), [&](const std::string& name) { return file.has_tensor(name); }, path);
  auto model = std::make_shared<LlamaForCausalLM>(cfg, options);
  // convert_hf_to_gguf.py permutes q/k rows for the llama architecture only (Qwen2 keeps HF's).
  const bool permuted = cfg.model_type == "llama";
  std::map<std::string, at::Tensor> tensors;
  for (const io::GgufTensorInfo& info : file.tensors()) {
    const auto hf = io::gguf_to_hf_name(info.name);
    TORCH_CHECK(hf.has_value(), path, ": tensor '", info.name, "' has no place in a ",
                cfg.model_type, " model");
    at::Tensor t = file.dequantize(info.name);
    if (permuted && hf->find(".self_attn.q_proj.") != std::string::npos) {
      t = io::unpermute_qk(t, cfg.num_attention_heads);
    } else if (permuted && hf->find(".self_attn.k_proj.") != std::string::npos) {
      t = io::unpermute_qk(t, cfg.num_key_value_heads);
    }
    tensors.emplace(*hf, std::move(t));
  }
  load_state_dict(*model, tensors);
  return model;
}

std::shared_ptr<LlamaForCausalLM> load_model(const std::string& path,
                                             torch::TensorOptions options) {
  if (fs::is_directory(path)) return load_hf_model(path, options);
  TORCH_CHECK(fs::exists(path), "load_model: '", path, "' does not exist");
  if (fs::path(path).extension() == ".gguf") return load_gguf_model(path, options);
  TORCH_CHECK(
      false, "load_model: '", path,
      "' is neither a Hugging Face directory (config.json + *.safetensors) nor a .gguf file");
}

}  // namespace qat::models
