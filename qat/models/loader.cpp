#include "qat/models/loader.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <set>
#include <tuple>

#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "qat/io/safetensors_torch.h"

namespace qat::models {

namespace fs = std::filesystem;

namespace {

// What a streamed load reads: the tensors a file holds, by transformers' names, one at a time.
struct TensorSource {
  std::string origin;  // the file, for errors
  std::set<std::string> names;
  std::function<at::Tensor(const std::string&)> read;  // in the file's dtype, on the CPU
  std::function<void(const std::string&)> done;        // optional: the tensor was copied out
};

// Fills the meta tensors of a model built on the meta device, as load_state_dict() would fill an
// eager one (the same copy_ conversion), one tensor at a time; see loader.h.
class StreamFill {
 public:
  StreamFill(const TensorSource& src, at::Device device) : src_(src), device_(device) {}

  // Materializes `param` (a meta tensor) from the file's tensor `name`; false when absent.
  bool fill(const std::string& name, const at::Tensor& param) {
    if (!src_.names.count(name)) {
      missing_.insert(name);
      return false;
    }
    at::Tensor dst = at::empty(param.sizes(), param.options().device(device_));
    {
      const at::Tensor t = src_.read(name);
      TORCH_CHECK(t.sizes() == param.sizes(), src_.origin, ": '", name, "' has shape ", t.sizes(),
                  " in the checkpoint but ", param.sizes(), " in the model");
      dst.copy_(t);
    }
    if (src_.done) src_.done(name);
    // set_data() refuses a meta tensor (has_compatible_shallow_copy_type lists no meta backend);
    // past that check it does exactly this: the tensor, and every handle sharing it (the
    // module's members), takes dst's storage, device, dtype and shape and keeps its autograd
    // flags.
    param.unsafeGetTensorImpl()->shallow_copy_from(dst.getIntrusivePtr());
    used_.insert(name);
    return true;
  }
  // Throws naming what the model needed and the file lacked, or what the file had and the model
  // does not (a tied model accepts an lm_head.weight equal to its embedding, as load_state_dict).
  void check_complete(const LlamaForCausalLM& model) const;

 private:
  const TensorSource& src_;
  at::Device device_;
  std::set<std::string> used_, missing_;
};

void StreamFill::check_complete(const LlamaForCausalLM& model) const {
  // What the file lacks first: the comparison below needs the embedding loaded.
  check_checkpoint_names(src_.origin, std::vector<std::string>(missing_.begin(), missing_.end()),
                         {});
  std::vector<std::string> unexpected;
  const at::Tensor embed = model.named_parameters()["model.embed_tokens.weight"];
  for (const std::string& name : src_.names) {
    if (used_.count(name)) continue;
    if (name == "lm_head.weight" && is_tied_head_copy(name, src_.read(name), embed)) continue;
    unexpected.push_back(name);
  }
  check_checkpoint_names(src_.origin, {}, unexpected);
}

// Builds the model on the meta device and fills it from `src`: each linear as soon as its
// tensors are in, handed to `on_linear`, then everything still on the meta device.
std::shared_ptr<LlamaForCausalLM> stream_model(const LlamaConfig& cfg, torch::TensorOptions options,
                                               const TensorSource& src,
                                               const LinearVisitor& on_linear) {
  c10::NoGradGuard no_grad;
  auto model = std::make_shared<LlamaForCausalLM>(cfg, options.device(at::kMeta));
  StreamFill filler(src, options.device());
  // The slots first, then their layers one at a time: a dense layer the visitor swaps is freed
  // before the next is read (for_each_linear's walk holds a parent's layers until it moves on).
  std::vector<std::tuple<nn::ModuleWithLinears*, std::string, std::string>> slots;
  nn::for_each_linear(*model, [&](nn::ModuleWithLinears& parent, const std::string& slot,
                                  const std::string& full, const std::shared_ptr<nn::LinearBase>&) {
    slots.emplace_back(&parent, slot, full);
  });
  for (const auto& [parent, slot, full] : slots) {
    const std::shared_ptr<nn::LinearBase> layer = parent->linears().at(slot);
    bool complete = true;
    for (const auto& p : layer->named_parameters())
      complete = filler.fill(full + "." + p.key(), p.value()) && complete;
    if (complete) on_linear(*parent, slot, full, layer);
  }
  for (const auto& p : model->named_parameters())
    if (p.value().is_meta()) filler.fill(p.key(), p.value());
  for (const auto& b : model->named_buffers())
    if (b.value().is_meta()) filler.fill(b.key(), b.value());
  filler.check_complete(*model);
  return model;
}

// The model with uninitialised parameters for load_state_dict() to fill: built on the meta device
// and given empty storage, so that loading draws no random numbers (the two initialisations of
// every weight were a third of a `qat eval` of SmolLM2). load_state_dict() refuses a checkpoint
// that lacks a parameter, so no uninitialised value survives.
std::shared_ptr<LlamaForCausalLM> empty_model(const LlamaConfig& cfg,
                                              torch::TensorOptions options) {
  auto model = std::make_shared<LlamaForCausalLM>(cfg, options.device(at::kMeta));
  for (const auto& p : model->named_parameters()) {
    if (!p.value().is_meta()) continue;  // a tied weight, materialized through its first name
    const at::Tensor dst =
        at::empty(p.value().sizes(), p.value().options().device(options.device()));
    // As in StreamFill::fill: every handle sharing the parameter takes dst's storage.
    p.value().unsafeGetTensorImpl()->shallow_copy_from(dst.getIntrusivePtr());
  }
  return model;
}

}  // namespace

std::shared_ptr<LlamaForCausalLM> load_hf_model(const std::string& dir,
                                                torch::TensorOptions options,
                                                const LinearVisitor& on_linear) {
  TORCH_CHECK(fs::is_directory(dir), "load_hf_model: '", dir, "' is not a directory");
  const fs::path config_path = fs::path(dir) / "config.json";
  TORCH_CHECK(fs::exists(config_path), "load_hf_model: '", dir, "' has no config.json");
  const LlamaConfig cfg = LlamaConfig::from_hf_file(config_path.string());
  if (!on_linear) {
    auto model = empty_model(cfg, options);
    load_state_dict(*model, io::load_safetensors(dir));
    return model;
  }
  const io::SafetensorsCheckpoint ckpt = io::SafetensorsCheckpoint::open(dir);
  TensorSource src;
  src.origin = dir;
  for (const std::string& name : ckpt.names()) src.names.insert(name);
  src.read = [&ckpt](const std::string& name) { return ckpt.tensor(name); };
  // The file's pages leave the resident set as each tensor is copied out (the views are gone).
  src.done = [&ckpt](const std::string& name) { ckpt.drop_pages(name); };
  return stream_model(cfg, options, src, on_linear);
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
                                                  torch::TensorOptions options,
                                                  const LinearVisitor& on_linear) {
  return load_gguf_model(io::GgufFile::open(path), options, on_linear);
}

std::shared_ptr<LlamaForCausalLM> load_gguf_model(const io::GgufFile& file,
                                                  torch::TensorOptions options,
                                                  const LinearVisitor& on_linear) {
  const std::string& path = file.path();
  const LlamaConfig cfg = config_from_gguf(
      file.metadata(), [&](const std::string& name) { return file.has_tensor(name); }, path);
  std::map<std::string, std::string> gguf_name;  // transformers' name -> the file's
  for (const io::GgufTensorInfo& info : file.tensors()) {
    const auto hf = io::gguf_to_hf_name(info.name);
    TORCH_CHECK(hf.has_value(), path, ": tensor '", info.name, "' has no place in a ",
                cfg.model_type, " model");
    gguf_name.emplace(*hf, info.name);
  }
  // convert_hf_to_gguf.py permutes q/k rows for the llama architecture only (Qwen2 keeps HF's).
  const bool permuted = cfg.model_type == "llama";
  TensorSource src;
  src.origin = path;
  for (const auto& [hf, name] : gguf_name) src.names.insert(hf);
  src.read = [&](const std::string& hf) {
    at::Tensor t = file.dequantize(gguf_name.at(hf));
    if (permuted && hf.find(".self_attn.q_proj.") != std::string::npos)
      return io::unpermute_qk(t, cfg.num_attention_heads);
    if (permuted && hf.find(".self_attn.k_proj.") != std::string::npos)
      return io::unpermute_qk(t, cfg.num_key_value_heads);
    return t;
  };
  if (on_linear) return stream_model(cfg, options, src, on_linear);
  auto model = empty_model(cfg, options);
  std::map<std::string, at::Tensor> tensors;
  for (const std::string& hf : src.names) tensors.emplace(hf, src.read(hf));
  load_state_dict(*model, tensors);
  return model;
}

std::shared_ptr<LlamaForCausalLM> load_model(const std::string& path, torch::TensorOptions options,
                                             const LinearVisitor& on_linear) {
  if (fs::is_directory(path)) return load_hf_model(path, options, on_linear);
  TORCH_CHECK(fs::exists(path), "load_model: '", path, "' does not exist");
  if (fs::path(path).extension() == ".gguf") return load_gguf_model(path, options, on_linear);
  TORCH_CHECK(
      false, "load_model: '", path,
      "' is neither a Hugging Face directory (config.json + *.safetensors) nor a .gguf file");
}

}  // namespace qat::models
