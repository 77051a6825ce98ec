// tokenizer.json (HF tokenizers' serialization) -> BpeTokenizerSpec. Every field is checked for
// its type; anything this implementation would not reproduce exactly is rejected by name.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "data/tokenizer/bpe_tokenizer.h"

namespace qat::data {

namespace {

using nlohmann::json;

class JsonReader {
 public:
  explicit JsonReader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& where, const std::string& msg) const {
    throw std::invalid_argument(source_ + ": " + where + ": " + msg);
  }
  static std::string type_of(const json& j) { return j.type_name(); }

  const json& object(const json& j, const std::string& where) const {
    if (!j.is_object()) fail(where, "expected an object, found " + type_of(j));
    return j;
  }
  // Member `key` of object `j`, or nullptr when absent or null.
  const json* member(const json& j, const char* key) const {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  std::string string(const json& j, const char* key, const std::string& where,
                     std::optional<std::string> fallback = std::nullopt) const {
    const json* m = member(j, key);
    if (!m) {
      if (fallback) return *fallback;
      fail(where + "." + key, "missing");
    }
    if (!m->is_string()) fail(where + "." + key, "expected a string, found " + type_of(*m));
    return m->get<std::string>();
  }
  bool boolean(const json& j, const char* key, const std::string& where, bool fallback) const {
    const json* m = member(j, key);
    if (!m) return fallback;
    if (!m->is_boolean()) fail(where + "." + key, "expected a boolean, found " + type_of(*m));
    return m->get<bool>();
  }
  int32_t id(const json& j, const std::string& where) const {
    if (!j.is_number_integer() || j.get<int64_t>() < 0 || j.get<int64_t>() > INT32_MAX) {
      fail(where, "expected a token id (integer in [0, 2^31)), found " + j.dump());
    }
    return static_cast<int32_t>(j.get<int64_t>());
  }

  void parse_model(const json& root, BpeTokenizerSpec& spec) const;
  void parse_added(const json& root, BpeTokenizerSpec& spec) const;
  // `depth` bounds Sequence nesting so that hostile files cannot exhaust the stack.
  void parse_pre(const json& node, const std::string& where, PreTokenizer& pre,
                 int depth = 0) const;
  void parse_post(const json& node, const std::string& where, BpeTokenizerSpec& spec,
                  int depth = 0) const;
  static constexpr int kMaxDepth = 16;

 private:
  std::string source_;
};

void JsonReader::parse_model(const json& root, BpeTokenizerSpec& spec) const {
  const json* model = member(root, "model");
  if (!model) fail("model", "missing (a tokenizer.json needs a model)");
  object(*model, "model");
  const std::string type = string(*model, "type", "model", std::string("BPE"));
  if (type != "BPE") {
    fail("model.type", "model '" + type +
                           "' is not supported (only byte-level BPE; use a "
                           "SentencePiece .model for Unigram)");
  }
  if (const json* d = member(*model, "dropout")) {
    if (!d->is_number() || d->get<double>() != 0.0) {
      fail("model.dropout", "BPE dropout is random and not supported; found " + d->dump());
    }
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!string(*model, key, "model", std::string()).empty()) {
      fail(std::string("model.") + key, "is not supported (byte-level BPE does not use it)");
    }
  }
  if (member(*model, "unk_token")) spec.options.unk_token = string(*model, "unk_token", "model");
  spec.options.fuse_unk = boolean(*model, "fuse_unk", "model", false);
  spec.options.byte_fallback = boolean(*model, "byte_fallback", "model", false);
  spec.options.ignore_merges = boolean(*model, "ignore_merges", "model", false);

  const json* vocab = member(*model, "vocab");
  if (!vocab) fail("model.vocab", "missing");
  object(*vocab, "model.vocab");
  spec.vocab.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    spec.vocab[it.key()] = id(it.value(), "model.vocab['" + it.key() + "']");
  }
  const json* merges = member(*model, "merges");
  if (!merges) fail("model.merges", "missing");
  if (!merges->is_array()) fail("model.merges", "expected an array, found " + type_of(*merges));
  spec.merges.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const json& m = (*merges)[i];
    const std::string where = "model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {
      // "a b": exactly one space (tokens never contain one: it is "Ġ" at the byte level).
      const auto& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        fail(where, "expected \"left right\" with exactly one space, found '" + s + "'");
      }
      spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      fail(where, "expected a string \"a b\" or a pair [\"a\", \"b\"], found " + m.dump());
    }
  }
}

void JsonReader::parse_added(const json& root, BpeTokenizerSpec& spec) const {
  const json* added = member(root, "added_tokens");
  if (!added) return;
  if (!added->is_array()) fail("added_tokens", "expected an array, found " + type_of(*added));
  for (size_t i = 0; i < added->size(); ++i) {
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    const json& t = object((*added)[i], where);
    AddedToken tok;
    const json* idj = member(t, "id");
    if (!idj) fail(where + ".id", "missing");
    tok.id = id(*idj, where + ".id");
    tok.content = string(t, "content", where);
    tok.special = boolean(t, "special", where, false);
    tok.lstrip = boolean(t, "lstrip", where, false);
    tok.rstrip = boolean(t, "rstrip", where, false);
    tok.single_word = boolean(t, "single_word", where, false);
    tok.normalized = boolean(t, "normalized", where, !tok.special);
    spec.added_tokens.push_back(std::move(tok));
  }
}

void JsonReader::parse_pre(const json& node, const std::string& where, PreTokenizer& pre,
                           int depth) const {
  object(node, where);
  if (depth > kMaxDepth) fail(where, "Sequence nested deeper than " + std::to_string(kMaxDepth));
  const std::string type = string(node, "type", where);
  if (type == "Sequence") {
    const json* list = member(node, "pretokenizers");
    if (!list || !list->is_array()) fail(where + ".pretokenizers", "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      parse_pre((*list)[i], where + ".pretokenizers[" + std::to_string(i) + "]", pre, depth + 1);
    }
  } else if (type == "ByteLevel") {
    // HF's defaults when the fields are absent: add_prefix_space true, use_regex true.
    pre.add_byte_level(boolean(node, "add_prefix_space", where, true),
                       boolean(node, "use_regex", where, true));
  } else if (type == "Digits") {
    pre.add_digits(boolean(node, "individual_digits", where, false));
  } else if (type == "Split") {
    const json* pattern = member(node, "pattern");
    if (!pattern) fail(where + ".pattern", "missing");
    object(*pattern, where + ".pattern");
    std::string regex;
    if (pattern->contains("Regex")) {
      regex = string(*pattern, "Regex", where + ".pattern");
    } else if (pattern->contains("String")) {
      regex = regex_escape(string(*pattern, "String", where + ".pattern"));
    } else {
      fail(where + ".pattern",
           "expected {\"Regex\": ...} or {\"String\": ...}, found " + pattern->dump());
    }
    const SplitBehavior behavior =
        parse_split_behavior(string(node, "behavior", where), source_ + ": " + where + ".behavior");
    pre.add_split(regex, behavior, boolean(node, "invert", where, false),
                  source_ + ": " + where + ".pattern.Regex");
  } else {
    fail(where + ".type", "pre-tokenizer '" + type +
                              "' is not supported (supported: ByteLevel, Split, Digits, Sequence)");
  }
}

void JsonReader::parse_post(const json& node, const std::string& where, BpeTokenizerSpec& spec,
                            int depth) const {
  object(node, where);
  if (depth > kMaxDepth) fail(where, "Sequence nested deeper than " + std::to_string(kMaxDepth));
  const std::string type = string(node, "type", where);
  if (type == "ByteLevel") return;  // only adjusts offsets, never ids
  if (type == "Sequence") {
    const json* list = member(node, "processors");
    if (!list || !list->is_array()) fail(where + ".processors", "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      parse_post((*list)[i], where + ".processors[" + std::to_string(i) + "]", spec, depth + 1);
    }
    return;
  }
  if (type != "TemplateProcessing") {
    fail(where + ".type", "post-processor '" + type +
                              "' is not supported (supported: "
                              "TemplateProcessing, ByteLevel, Sequence)");
  }
  if (!spec.post_template.empty()) fail(where, "a second TemplateProcessing is not supported");
  const json* single = member(node, "single");
  if (!single || !single->is_array()) fail(where + ".single", "expected an array");
  const json* specials = member(node, "special_tokens");
  bool has_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const std::string w = where + ".single[" + std::to_string(i) + "]";
    const json& item = object((*single)[i], w);
    TemplatePiece piece;
    if (const json* seq = member(item, "Sequence")) {
      const std::string name = string(object(*seq, w + ".Sequence"), "id", w + ".Sequence");
      if (name != "A")
        fail(w + ".Sequence.id", "expected \"A\" in a single template, found " + name);
      piece.is_sequence = has_sequence = true;
    } else if (const json* st = member(item, "SpecialToken")) {
      const std::string name = string(object(*st, w + ".SpecialToken"), "id", w + ".SpecialToken");
      const json* entry = specials ? member(*specials, name.c_str()) : nullptr;
      if (!entry) fail(where + ".special_tokens", "no entry for '" + name + "'");
      const json* ids = member(object(*entry, where + ".special_tokens"), "ids");
      if (!ids || !ids->is_array())
        fail(where + ".special_tokens['" + name + "'].ids", "expected an array");
      for (const json& x : *ids)
        piece.ids.push_back(id(x, where + ".special_tokens['" + name + "'].ids"));
      if (!has_sequence && spec.post_template.empty() && piece.ids.size() == 1) {
        spec.special.bos = piece.ids[0];  // a single token before the text is the BOS
      }
    } else {
      fail(w, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}, found " + item.dump());
    }
    spec.post_template.push_back(std::move(piece));
  }
  if (!has_sequence) fail(where + ".single", "the template never places the text (\"A\")");
}

}  // namespace

std::unique_ptr<BpeTokenizer> parse_bpe_tokenizer_json(std::string_view text,
                                                       const std::string& source) {
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw std::invalid_argument(source + ": not valid JSON: " + e.what());
  }
  JsonReader r(source);
  r.object(root, "tokenizer.json");
  BpeTokenizerSpec spec;
  spec.source = source;
  if (const json* norm = r.member(root, "normalizer")) {
    r.object(*norm, "normalizer");
    const std::string type = r.string(*norm, "type", "normalizer");
    const json* list = r.member(*norm, "normalizers");
    if (!(type == "Sequence" && list && list->is_array() && list->empty())) {
      r.fail("normalizer.type", "normalizer '" + type +
                                    "' is not supported (byte-level BPE "
                                    "tokenizers here must have no normalizer)");
    }
  }
  r.parse_model(root, spec);
  r.parse_added(root, spec);
  if (const json* pre = r.member(root, "pre_tokenizer"))
    r.parse_pre(*pre, "pre_tokenizer", spec.pre_tokenizer);
  if (const json* post = r.member(root, "post_processor"))
    r.parse_post(*post, "post_processor", spec);
  spec.decoder = BpeDecoder::kNone;
  if (const json* dec = r.member(root, "decoder")) {
    r.object(*dec, "decoder");
    const std::string type = r.string(*dec, "type", "decoder");
    if (type != "ByteLevel") {
      r.fail("decoder.type", "decoder '" + type + "' is not supported (supported: ByteLevel)");
    }
    spec.decoder = BpeDecoder::kByteLevel;
  }
  if (spec.options.unk_token) {
    auto it = spec.vocab.find(*spec.options.unk_token);
    if (it != spec.vocab.end()) spec.special.unk = it->second;
  }
  return std::make_unique<BpeTokenizer>(std::move(spec));
}

namespace {

// tokenizer_config.json names special tokens as "text" or {"content": "text", ...}.
std::optional<int32_t> config_token(const nlohmann::json& cfg, const char* key,
                                    const Tokenizer& tok) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return std::nullopt;
  std::string content;
  if (it->is_string()) {
    content = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    content = (*it)["content"].get<std::string>();
  } else {
    return std::nullopt;
  }
  return tok.token_to_id(content);
}

}  // namespace

std::unique_ptr<BpeTokenizer> load_bpe_tokenizer_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open tokenizer file '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  auto tok = parse_bpe_tokenizer_json(ss.str(), path);
  const auto cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::ifstream cf(cfg_path, std::ios::binary);
  if (cf) {
    nlohmann::json cfg;
    try {
      cfg = nlohmann::json::parse(cf);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(cfg_path.string() + ": not valid JSON: " + e.what());
    }
    SpecialTokenIds ids{tok->bos_id(), tok->eos_id(), tok->unk_id(), tok->pad_id()};
    if (cfg.is_object()) {
      if (auto v = config_token(cfg, "bos_token", *tok)) ids.bos = v;
      if (auto v = config_token(cfg, "eos_token", *tok)) ids.eos = v;
      if (auto v = config_token(cfg, "pad_token", *tok)) ids.pad = v;
      if (auto v = config_token(cfg, "unk_token", *tok)) ids.unk = v;
    }
    tok->set_special_ids(ids);
  }
  return tok;
}

}  // namespace qat::data
