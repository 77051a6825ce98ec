// Pieces every Hugging Face directory export shares: config.json, tokenizer files, JSON/text files.
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

#include "qat/export/tokenizer_convert.h"
#include "qat/export/writers.h"

namespace qat::exporting::detail {

namespace fs = std::filesystem;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  TORCH_CHECK(f, "export: cannot open ", path, " for writing");
  f << text;
  f.close();
  TORCH_CHECK(f, "export: writing ", path, " failed (disk full?)");
}

void write_json(const std::string& path, const nlohmann::json& j) {
  write_text(path, j.dump(2) + "\n");
}

std::string hf_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    case at::kFloat:
      return "float32";
    default:
      TORCH_CHECK(false, "export: dtype ", t, " is not a checkpoint dtype (bf16, fp16, fp32)");
  }
}

bool per_output_channel(const scheme::Granularity& g) {
  using Kind = scheme::Granularity::Kind;
  return (g.kind == Kind::kPerAxis && (g.axis == 0 || g.axis == -2)) || g.kind == Kind::kPerToken;
}

scheme::ScaleDtype scale_dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kHalf:
      return scheme::ScaleDtype::kFloat16;
    case at::kBFloat16:
      return scheme::ScaleDtype::kBFloat16;
    default:
      return scheme::ScaleDtype::kFloat32;
  }
}

void write_hf_config(const std::string& dir, const models::LlamaConfig& cfg, at::ScalarType dtype,
                     const nlohmann::json& quantization_config) {
  nlohmann::json j = cfg.to_hf_json();
  j["dtype"] = hf_dtype_name(dtype);
  j["torch_dtype"] = hf_dtype_name(dtype);  // transformers < 4.56 reads this name
  if (!quantization_config.is_null()) j["quantization_config"] = quantization_config;
  write_json((fs::path(dir) / "config.json").string(), j);
}

namespace {

// generation_config.json for an HF source without one: its stop tokens read through the GGUF
// tokenizer conversion. That conversion covers byte-level BPE only; for other tokenizers
// (SentencePiece, byte_fallback BPE) the eos/bos/pad ids of config.json, which the model's
// config carries, are written instead.
void write_generation_config(const fs::path& out, const TokenizerSource& tok,
                             const models::LlamaConfig& cfg) {
  StopTokens stop;
  try {
    stop = stop_tokens(gguf_tokenizer_metadata(tok, cfg.vocab_size));
  } catch (const c10::Error&) {
    stop.bos = cfg.bos_token_id;
    stop.pad = cfg.pad_token_id;
    if (cfg.eos_token_id) stop.eog = {*cfg.eos_token_id};
  }
  write_json((out / "generation_config.json").string(), generation_config(stop));
}

}  // namespace

void write_hf_tokenizer(const std::string& dir, const TokenizerSource& tok,
                        const models::LlamaConfig& cfg) {
  const fs::path out(dir);
  if (!tok.hf_dir.empty()) {
    // An HF source: its files are the truth; copy them unchanged.
    const char* const names[] = {
        "tokenizer.json",          "tokenizer.model",     "tokenizer_config.json",
        "special_tokens_map.json", "chat_template.jinja", "generation_config.json",
        "added_tokens.json",       "vocab.json",          "merges.txt"};
    bool any = false;
    for (const char* n : names) {
      const fs::path src = fs::path(tok.hf_dir) / n;
      if (!fs::exists(src)) continue;
      fs::copy_file(src, out / n, fs::copy_options::overwrite_existing);
      any = true;
    }
    TORCH_CHECK(any, "export: ", tok.hf_dir, " holds no tokenizer files to copy");
    if (!fs::exists(out / "generation_config.json")) write_generation_config(out, tok, cfg);
    return;
  }
  TORCH_CHECK(tok.gguf,
              "export: the model has no tokenizer to write (pass the source's tokenizer: ",
              "a GGUF file's tokenizer.* keys or an HF directory)");
  write_json((out / "tokenizer.json").string(), tokenizer_json_from_gguf(*tok.gguf));
  write_json((out / "tokenizer_config.json").string(),
             tokenizer_config_from_gguf(*tok.gguf, tok.chat_template, cfg.max_position_embeddings));
  // A GGUF source has no generation settings but its stop tokens: without eos ids transformers'
  // generate() runs to max_new_tokens.
  write_json((out / "generation_config.json").string(), generation_config(stop_tokens(*tok.gguf)));
}

void add_dense(Job& job, TensorList& out, const std::string& name, const at::Tensor& t,
               at::ScalarType dtype, const std::string& origin) {
  const at::Tensor c = t.to(dtype).contiguous();
  job.report.tensors.push_back(dense_record(name, c, origin));
  out.emplace_back(name, c);
}

void add_others(Job& job, TensorList& out, at::ScalarType dtype) {
  for (const auto& [name, t] : job.others) add_dense(job, out, name, t, dtype, "dense");
}

TensorRecord dense_record(const std::string& name, const at::Tensor& t, const std::string& origin) {
  TensorRecord r;
  r.name = name;
  r.type = c10::toString(t.scalar_type());
  r.origin = origin;
  r.numel = t.numel();
  r.bytes = t.numel() * static_cast<int64_t>(t.element_size());
  r.theoretical_bits = 8.0 * static_cast<double>(t.element_size());
  return r;
}

}  // namespace qat::exporting::detail
