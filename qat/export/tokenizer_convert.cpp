#include "qat/export/tokenizer_convert.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "data/tokenizer/gguf_tokenizer.h"
#include "data/tokenizer/pre_tokenizer.h"
#include "qat/models/pretrained.h"

namespace qat::exporting {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

// The pre-tokenizer names whose regexes we can state (data::gguf_pre_regexes knows more aliases;
// these are the canonical names llama.cpp prints).
const char* const kPreNames[] = {"gpt2", "llama-bpe", "qwen2", "smollm"};

json added_token(int32_t id, const std::string& content, bool special) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", special}};
}

std::optional<int32_t> optional_id(const io::GgufMetadata& m, const std::string& key) {
  if (!m.has(key)) return std::nullopt;
  return static_cast<int32_t>(m.get_u32(key));
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  TORCH_CHECK(f, "export: cannot read ", p.string());
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

json read_json(const fs::path& p) {
  try {
    return json::parse(read_file(p));
  } catch (const json::exception& e) {
    TORCH_CHECK(false, p.string(), ": not valid JSON: ", e.what());
  }
}

// The regexes an HF pre_tokenizer applies, in order (ByteLevel with use_regex contributes the
// GPT-2 pattern, Digits(individual_digits) the single-digit split).
void collect_regexes(const json& node, std::vector<std::string>& out, const std::string& src) {
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const auto& n : node.at("pretokenizers")) collect_regexes(n, out, src);
  } else if (type == "ByteLevel") {
    TORCH_CHECK(!node.value("add_prefix_space", false), src,
                ": ByteLevel add_prefix_space=true has no GGUF equivalent");
    if (node.value("use_regex", true)) out.emplace_back(data::kByteLevelPattern);
  } else if (type == "Digits") {
    TORCH_CHECK(node.value("individual_digits", false), src,
                ": Digits without individual_digits has no GGUF equivalent");
    out.emplace_back(R"(\p{N})");
  } else if (type == "Split") {
    TORCH_CHECK(node.contains("pattern") && node["pattern"].contains("Regex") &&
                    node.value("behavior", "") == "Isolated" && !node.value("invert", false),
                src,
                ": only Split with a Regex pattern, behavior Isolated and invert false maps to ",
                "a GGUF pre-tokenizer; found ", node.dump());
    out.push_back(node["pattern"]["Regex"].get<std::string>());
  } else {
    TORCH_CHECK(false, src, ": pre-tokenizer '", type, "' has no GGUF equivalent");
  }
}

// A special token named in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

namespace {

// The BPE vocab (a duplicate token keeps its first id), and the added tokens (control and
// user-defined ones) into `added`.
json bpe_vocab(const std::vector<std::string>& tokens, const std::vector<int32_t>& types,
               json& added) {
  json vocab = json::object();
  added = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    if (!vocab.contains(tokens[i])) vocab[tokens[i]] = id;
    if (types[i] == kControl || types[i] == kUserDefined)
      added.push_back(added_token(id, tokens[i], types[i] == kControl));
  }
  return vocab;
}

// "left right" merges as [left, right] pairs.
json merge_pairs(const std::vector<std::string>& merges) {
  json merge_list = json::array();
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& m = merges[i];
    const size_t sp = m.find(' ', 1);  // a leading space would belong to the left token
    TORCH_CHECK(sp != std::string::npos, "export: tokenizer.ggml.merges[", i, "] = '", m,
                "' is not \"left right\"");
    merge_list.push_back(json::array({m.substr(0, sp), m.substr(sp + 1)}));
  }
  return merge_list;
}

// The GGUF pre-tokenizer's regexes as isolated Splits, then byte-level without its own regex.
json pre_tokenizers(const std::string& pre) {
  json pretok = json::array();
  for (const std::string& re : data::gguf_pre_regexes(pre)) {
    pretok.push_back({{"type", "Split"},
                      {"pattern", {{"Regex", re}}},
                      {"behavior", "Isolated"},
                      {"invert", false}});
  }
  pretok.push_back({{"type", "ByteLevel"},
                    {"add_prefix_space", false},
                    {"trim_offsets", true},
                    {"use_regex", false}});
  return pretok;
}

// Byte-level post-processing, or a template adding BOS / EOS when the GGUF says the tokenizer
// adds them.
json post_processor(const io::GgufMetadata& meta, const std::vector<std::string>& tokens) {
  const bool add_bos = meta.get_optional<bool>("tokenizer.ggml.add_bos_token").value_or(false);
  const bool add_eos = meta.get_optional<bool>("tokenizer.ggml.add_eos_token").value_or(false);
  if (!add_bos && !add_eos) {
    return {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", false},
            {"use_regex", true}};
  }
  json single = json::array(), pair = json::array(), specials = json::object();
  auto special = [&](const char* key) {
    const auto id = optional_id(meta, key);
    TORCH_CHECK(id && *id >= 0 && static_cast<size_t>(*id) < tokens.size(), "export: ", key,
                " is missing or out of range but the tokenizer adds it");
    const std::string& t = tokens[static_cast<size_t>(*id)];
    specials[t] = {{"id", t}, {"ids", {*id}}, {"tokens", {t}}};
    return json{{"SpecialToken", {{"id", t}, {"type_id", 0}}}};
  };
  if (add_bos) single.push_back(special("tokenizer.ggml.bos_token_id"));
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  if (add_eos) single.push_back(special("tokenizer.ggml.eos_token_id"));
  pair = single;
  if (add_bos) pair.push_back(special("tokenizer.ggml.bos_token_id"));
  pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
  if (add_eos) pair.push_back(special("tokenizer.ggml.eos_token_id"));
  return {{"type", "TemplateProcessing"},
          {"single", single},
          {"pair", pair},
          {"special_tokens", specials}};
}

}  // namespace

json tokenizer_json_from_gguf(const io::GgufMetadata& meta) {
  const std::string model = meta.get_string("tokenizer.ggml.model");
  TORCH_CHECK(model == "gpt2", "export: GGUF tokenizer model '", model, "' cannot be written as a ",
              "tokenizer.json yet (only byte-level BPE, tokenizer.ggml.model = gpt2); copy the ",
              "original model's tokenizer files next to the export instead");
  const auto pre = meta.get_string_optional("tokenizer.ggml.pre");
  TORCH_CHECK(pre,
              "export: the GGUF tokenizer has no tokenizer.ggml.pre; its pre-tokenizer is unknown");
  const auto& tokens = meta.get_string_array("tokenizer.ggml.tokens");
  const std::vector<int32_t> types = meta.has("tokenizer.ggml.token_type")
                                         ? meta.get_i32_array("tokenizer.ggml.token_type")
                                         : std::vector<int32_t>(tokens.size(), kNormal);
  TORCH_CHECK(types.size() == tokens.size(), "export: tokenizer.ggml.token_type has ", types.size(),
              " entries for ", tokens.size(), " tokens");
  json added;
  const json vocab = bpe_vocab(tokens, types, added);
  const json merge_list = merge_pairs(meta.get_string_array("tokenizer.ggml.merges"));
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", pre_tokenizers(*pre)}}},
          {"post_processor", post_processor(meta, tokens)},
          {"decoder",
           {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", vocab},
            {"merges", merge_list}}}};
}

json tokenizer_config_from_gguf(const io::GgufMetadata& meta, const std::string& chat_template,
                                int64_t model_max_length) {
  const auto& tokens = meta.get_string_array("tokenizer.ggml.tokens");
  json cfg = {
      {"tokenizer_class", "PreTrainedTokenizerFast"},
      {"clean_up_tokenization_spaces", false},
      {"model_max_length", model_max_length},
      {"add_bos_token", meta.get_optional<bool>("tokenizer.ggml.add_bos_token").value_or(false)},
      {"add_eos_token", meta.get_optional<bool>("tokenizer.ggml.add_eos_token").value_or(false)}};
  const std::pair<const char*, const char*> ids[] = {
      {"bos_token", "tokenizer.ggml.bos_token_id"},
      {"eos_token", "tokenizer.ggml.eos_token_id"},
      {"unk_token", "tokenizer.ggml.unknown_token_id"},
      {"pad_token", "tokenizer.ggml.padding_token_id"}};
  for (const auto& [name, key] : ids) {
    const auto id = optional_id(meta, key);
    if (id && *id >= 0 && static_cast<size_t>(*id) < tokens.size())
      cfg[name] = tokens[static_cast<size_t>(*id)];
  }
  const std::string tmpl = !chat_template.empty()
                               ? chat_template
                               : meta.get_string_optional("tokenizer.chat_template").value_or("");
  if (!tmpl.empty()) cfg["chat_template"] = tmpl;
  return cfg;
}

namespace {

// The GGUF pre-tokenizer name whose regexes are exactly the tokenizer.json's.
std::string gguf_pre_name(const json& tj, const std::string& src) {
  TORCH_CHECK(tj.contains("pre_tokenizer") && !tj["pre_tokenizer"].is_null(), src,
              ": no pre_tokenizer");
  std::vector<std::string> regexes;
  collect_regexes(tj["pre_tokenizer"], regexes, src);
  std::string tried;
  for (const char* name : kPreNames) {
    if (data::gguf_pre_regexes(name) == regexes) return name;
    tried += tried.empty() ? name : std::string(", ") + name;
  }
  TORCH_CHECK(false, src, ": its pre-tokenizer regexes match none of the GGUF pre-tokenizers ",
              "this exporter knows (", tried, "); llama.cpp would split text differently");
}

// Tokens by id with their GGUF types: the BPE vocab, then added tokens (which may extend it),
// padded to vocab_size with "[PADi]" as convert_hf_to_gguf.py does.
void hf_vocabulary(const json& tj, int64_t vocab_size, const std::string& src,
                   std::vector<std::string>& tokens, std::vector<int32_t>& types) {
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;
  for (const auto& [tok, id] : tj.at("model").at("vocab").items())
    by_id[id.get<int64_t>()] = {tok, kNormal};
  if (tj.contains("added_tokens")) {
    for (const auto& t : tj["added_tokens"]) {
      by_id[t.at("id").get<int64_t>()] = {t.at("content").get<std::string>(),
                                          t.value("special", false) ? kControl : kUserDefined};
    }
  }
  TORCH_CHECK(!by_id.empty() && by_id.begin()->first >= 0, src,
              ": empty vocabulary or negative ids");
  const int64_t n = std::max<int64_t>(by_id.rbegin()->first + 1, vocab_size);
  tokens.assign(static_cast<size_t>(n), "");
  types.assign(static_cast<size_t>(n), kUnused);
  for (int64_t i = 0; i < n; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      tokens[static_cast<size_t>(i)] = "[PAD" + std::to_string(i) + "]";
    } else {
      tokens[static_cast<size_t>(i)] = it->second.first;
      types[static_cast<size_t>(i)] = it->second.second;
    }
  }
}

// Merges as "left right" strings (tokenizer.json has them as strings or as pairs).
std::vector<std::string> hf_merges(const json& model, const std::string& src) {
  std::vector<std::string> merges;
  for (const auto& m : model.at("merges")) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
    } else {
      TORCH_CHECK(m.is_array() && m.size() == 2, src, ": a merge must be \"a b\" or [a, b], found ",
                  m.dump());
      merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
  }
  return merges;
}

// bos/eos/unk/pad ids: the token named in tokenizer_config.json, else config.json's id; and
// add_bos/add_eos: a post-processor template that starts/ends with a special token, or the
// config's flags.
void set_special_tokens(io::GgufMetadata& out, const std::string& dir, const json& tj,
                        const std::vector<std::string>& tokens) {
  const json cfg = fs::exists(fs::path(dir) / "tokenizer_config.json")
                       ? read_json(fs::path(dir) / "tokenizer_config.json")
                       : json::object();
  const json mcfg = fs::exists(fs::path(dir) / "config.json")
                        ? read_json(fs::path(dir) / "config.json")
                        : json::object();
  auto id_of = [&](const std::string& t) -> std::optional<uint32_t> {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] == t) return static_cast<uint32_t>(i);
    }
    return std::nullopt;
  };
  const std::tuple<const char*, const char*, const char*> ids[] = {
      {"bos_token", "bos_token_id", "tokenizer.ggml.bos_token_id"},
      {"eos_token", "eos_token_id", "tokenizer.ggml.eos_token_id"},
      {"unk_token", "unk_token_id", "tokenizer.ggml.unknown_token_id"},
      {"pad_token", "pad_token_id", "tokenizer.ggml.padding_token_id"}};
  for (const auto& [cfg_key, model_key, gguf_key] : ids) {
    std::optional<uint32_t> id;
    if (auto t = config_token(cfg, cfg_key)) id = id_of(*t);
    if (!id && mcfg.contains(model_key) && mcfg[model_key].is_number_integer())
      id = mcfg[model_key].get<uint32_t>();
    if (id) out.set(gguf_key, io::GgufValue::scalar<uint32_t>(*id));
  }
  bool add_bos = cfg.value("add_bos_token", false);
  bool add_eos = cfg.value("add_eos_token", false);
  if (tj.contains("post_processor") && tj["post_processor"].is_object() &&
      tj["post_processor"].value("type", "") == "TemplateProcessing") {
    const json& single = tj["post_processor"]["single"];
    add_bos = !single.empty() && single.front().contains("SpecialToken");
    add_eos = !single.empty() && single.back().contains("SpecialToken");
  }
  out.set("tokenizer.ggml.add_bos_token", io::GgufValue::scalar<bool>(add_bos));
  out.set("tokenizer.ggml.add_eos_token", io::GgufValue::scalar<bool>(add_eos));
}

}  // namespace

io::GgufMetadata gguf_tokenizer_from_hf(const std::string& dir, const std::string& chat_template,
                                        int64_t vocab_size) {
  const fs::path path = fs::path(dir) / "tokenizer.json";
  TORCH_CHECK(fs::exists(path), "export gguf: ", dir, " has no tokenizer.json (a SentencePiece ",
              "tokenizer.model cannot be converted to GGUF metadata yet)");
  const std::string src = path.string();
  const json tj = read_json(path);
  const json& model = tj.at("model");
  TORCH_CHECK(model.value("type", "") == "BPE" && !model.value("byte_fallback", false), src,
              ": only byte-level BPE tokenizers convert to GGUF (found model type '",
              model.value("type", ""), "'",
              model.value("byte_fallback", false) ? " with byte_fallback" : "", ")");
  TORCH_CHECK(!tj.contains("normalizer") || tj["normalizer"].is_null(), src,
              ": a normalizer has no GGUF equivalent for byte-level BPE");
  const std::string pre = gguf_pre_name(tj, src);
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  hf_vocabulary(tj, vocab_size, src, tokens, types);

  io::GgufMetadata out;
  out.set("tokenizer.ggml.model", io::GgufValue::string("gpt2"));
  out.set("tokenizer.ggml.pre", io::GgufValue::string(pre));
  out.set("tokenizer.ggml.tokens", io::GgufValue::string_array(tokens));
  out.set("tokenizer.ggml.token_type", io::GgufValue::array<int32_t>(types));
  out.set("tokenizer.ggml.merges", io::GgufValue::string_array(hf_merges(model, src)));
  set_special_tokens(out, dir, tj, tokens);
  const std::string tmpl = !chat_template.empty() ? chat_template : models::hf_chat_template(dir);
  if (!tmpl.empty()) out.set("tokenizer.chat_template", io::GgufValue::string(tmpl));
  return out;
}

io::GgufMetadata gguf_tokenizer_metadata(const TokenizerSource& tok, int64_t vocab_size) {
  if (tok.gguf) {
    io::GgufMetadata out;
    for (const auto& [k, v] : tok.gguf->entries()) {
      if (k.rfind("tokenizer.", 0) == 0) out.set(k, v);
    }
    TORCH_CHECK(out.has("tokenizer.ggml.tokens"),
                "export gguf: the source GGUF has no tokenizer.ggml.tokens");
    return out;
  }
  TORCH_CHECK(!tok.hf_dir.empty(), "export gguf: the model has no tokenizer (pass the source's ",
              "tokenizer: a GGUF file's tokenizer.* keys or an HF directory with tokenizer.json)");
  return gguf_tokenizer_from_hf(tok.hf_dir, tok.chat_template, vocab_size);
}

StopTokens stop_tokens(const io::GgufMetadata& tok) {
  const auto& tokens = tok.get_string_array("tokenizer.ggml.tokens");
  auto valid = [&](std::optional<int64_t> id) -> std::optional<int64_t> {
    if (id && *id >= 0 && static_cast<size_t>(*id) < tokens.size()) return id;
    return std::nullopt;
  };
  StopTokens s;
  s.bos = valid(optional_id(tok, "tokenizer.ggml.bos_token_id"));
  s.eos = valid(optional_id(tok, "tokenizer.ggml.eos_token_id"));
  s.pad = valid(optional_id(tok, "tokenizer.ggml.padding_token_id"));
  auto add = [&](std::optional<int64_t> id) {
    if (!id || std::find(s.eog.begin(), s.eog.end(), *id) != s.eog.end()) return;
    s.eog.push_back(*id);
    s.eog_text.push_back(tokens[static_cast<size_t>(*id)]);
  };
  add(s.eos);
  add(valid(optional_id(tok, "tokenizer.ggml.eot_token_id")));
  add(valid(optional_id(tok, "tokenizer.ggml.eom_token_id")));
  // llama-vocab.cpp's end-of-generation names (llama.cpp 0.3.36's list, text-based models).
  static const char* const kEogNames[] = {
      "<|eot_id|>",    "<|im_end|>",      "<|end|>",
      "<end_of_turn>", "<|endoftext|>",   "<|eom_id|>",
      "<EOT>",         "_<EOT>",          "[EOT]",
      "[EOS]",         "<|end_of_text|>", "<end_of_utterance>",
      "<eos>",         "<turn|>",         "<｜end▁of▁sentence｜>"};
  for (size_t i = 0; i < tokens.size(); ++i) {
    for (const char* name : kEogNames) {
      if (tokens[i] == name) add(static_cast<int64_t>(i));
    }
  }
  return s;
}

json generation_config(const StopTokens& stop) {
  json j = json::object();
  if (stop.bos) j["bos_token_id"] = *stop.bos;
  if (stop.eog.size() == 1) j["eos_token_id"] = stop.eog.front();
  if (stop.eog.size() > 1) j["eos_token_id"] = stop.eog;
  if (stop.pad) j["pad_token_id"] = *stop.pad;
  return j;
}

namespace {
// A Modelfile string: Ollama's parser takes JSON-style escapes inside double quotes.
std::string quoted(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::strict);
}
}  // namespace

std::string ollama_modelfile(const std::string& gguf_file, const StopTokens& stop,
                             bool has_chat_template) {
  std::string m =
      "# Ollama Modelfile written by qat export. Create the model with:\n"
      "#   ollama create <name> -f <this file>\n"
      "# A LoRA adapter GGUF (qat export --format gguf-lora) goes on top with a line\n"
      "#   ADAPTER ./adapter.gguf\n";
  m += "FROM ./" + gguf_file + "\n";
  for (const std::string& t : stop.eog_text) m += "PARAMETER stop " + quoted(t) + "\n";
  if (!has_chat_template) {
    m += "# The GGUF has no chat template: prompts go to the model as they are.\n"
         "TEMPLATE \"{{ .Prompt }}\"\n";
  }
  return m;
}

}  // namespace qat::exporting
