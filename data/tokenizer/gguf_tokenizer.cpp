#include "data/tokenizer/gguf_tokenizer.h"

#include <stdexcept>
#include <utility>

#include "data/tokenizer/bpe_tokenizer.h"
#include "data/tokenizer/sentencepiece_tokenizer.h"

namespace qat::data {

namespace {

// The patterns are the ones in the models' own tokenizer.json files (what HF runs); llama.cpp's
// table in src/llama-vocab.cpp lists the same families, sometimes without the final "|\s+"
// alternative that its hand-written splitter implies.
const char* const kGpt2 = kByteLevelPattern;
const char* const kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kDigit = R"(\p{N})";

struct PreFamily {
  std::vector<const char*> names;
  std::vector<const char*> regexes;
};

const std::vector<PreFamily>& families() {
  static const std::vector<PreFamily> kFamilies = {
      {{"gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais"}, {kGpt2}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3"}, {kLlama3}},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2"}, {kQwen2}},
      // Digits split one by one first (HF: Digits(individual_digits) then ByteLevel).
      {{"smollm", "starcoder", "refact", "codeshell", "command-r"}, {kDigit, kGpt2}},
  };
  return kFamilies;
}

std::unique_ptr<Tokenizer> bpe_from_gguf(const GgufTokenizerData& d) {
  const std::string src = "GGUF tokenizer metadata";
  BpeTokenizerSpec spec;
  spec.source = src;
  const auto n = static_cast<int32_t>(d.tokens.size());
  spec.vocab.reserve(d.tokens.size());
  for (int32_t i = 0; i < n; ++i) {
    const auto type = d.token_types.empty() ? 1 : d.token_types[i];
    // Control and user-defined tokens are matched in the text before pre-tokenization, exactly
    // as HF's special tokens; they stay in the BPE vocab too (as in HF's tokenizer.json).
    if (type == static_cast<int32_t>(GgufTokenType::kControl) ||
        type == static_cast<int32_t>(GgufTokenType::kUserDefined)) {
      AddedToken t;
      t.id = i;
      t.content = d.tokens[i];
      t.special = type == static_cast<int32_t>(GgufTokenType::kControl);
      spec.added_tokens.push_back(std::move(t));
    }
    // A duplicated string keeps its first id, as in llama.cpp's token_to_id map.
    spec.vocab.emplace(d.tokens[i], i);
  }
  spec.merges.reserve(d.merges.size());
  for (size_t i = 0; i < d.merges.size(); ++i) {
    const std::string& m = d.merges[i];
    const size_t sp = m.find(' ', 1);  // a leading space would be part of the left token
    if (sp == std::string::npos) {
      throw std::invalid_argument(src + ": tokenizer.ggml.merges[" + std::to_string(i) +
                                  "]: expected \"left right\", found '" + m + "'");
    }
    spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  if (d.pre.empty()) {
    throw std::invalid_argument(src +
                                ": tokenizer.ggml.pre is missing; it selects the "
                                "pre-tokenizer regex and guessing it would tokenize wrongly");
  }
  for (const std::string& re : gguf_pre_regexes(d.pre)) {
    spec.pre_tokenizer.add_split(re, SplitBehavior::kIsolated, false,
                                 src + ": tokenizer.ggml.pre '" + d.pre + "'");
  }
  spec.pre_tokenizer.add_byte_level(false, false);
  spec.decoder = BpeDecoder::kByteLevel;
  spec.special = {d.bos_id, d.eos_id, d.unk_id, d.pad_id};
  if (d.add_bos) {
    if (!d.bos_id)
      throw std::invalid_argument(src + ": add_bos_token is set but bos_token_id is missing");
    spec.post_template.push_back({false, {*d.bos_id}});
  }
  spec.post_template.push_back({true, {}});
  if (d.add_eos) {
    if (!d.eos_id)
      throw std::invalid_argument(src + ": add_eos_token is set but eos_token_id is missing");
    spec.post_template.push_back({false, {*d.eos_id}});
  }
  if (!d.add_bos && !d.add_eos) spec.post_template.clear();
  return std::make_unique<BpeTokenizer>(std::move(spec));
}

}  // namespace

std::vector<std::string> gguf_pre_regexes(const std::string& pre) {
  std::string known;
  for (const auto& f : families()) {
    for (const char* name : f.names) {
      if (pre == name) return std::vector<std::string>(f.regexes.begin(), f.regexes.end());
      known += known.empty() ? name : std::string(", ") + name;
    }
  }
  throw std::invalid_argument("GGUF tokenizer metadata: tokenizer.ggml.pre '" + pre +
                              "' is not supported (supported: " + known + ")");
}

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GgufTokenizerData& d) {
  const std::string src = "GGUF tokenizer metadata";
  if (d.tokens.empty()) throw std::invalid_argument(src + ": tokenizer.ggml.tokens is empty");
  if (d.tokens.size() > static_cast<size_t>(INT32_MAX)) {
    throw std::invalid_argument(src + ": tokenizer.ggml.tokens has too many entries");
  }
  if (!d.token_types.empty() && d.token_types.size() != d.tokens.size()) {
    throw std::invalid_argument(src + ": tokenizer.ggml.token_type has " +
                                std::to_string(d.token_types.size()) + " entries, expected " +
                                std::to_string(d.tokens.size()) + " (one per token)");
  }
  const auto n = static_cast<int64_t>(d.tokens.size());
  const std::pair<const char*, std::optional<int32_t>> ids[] = {{"bos_token_id", d.bos_id},
                                                                {"eos_token_id", d.eos_id},
                                                                {"unknown_token_id", d.unk_id},
                                                                {"padding_token_id", d.pad_id}};
  for (const auto& [key, id] : ids) {
    if (id && (*id < 0 || *id >= n)) {
      throw std::invalid_argument(src + ": tokenizer.ggml." + key + " = " + std::to_string(*id) +
                                  " is outside the vocabulary [0, " + std::to_string(n) + ")");
    }
  }
  if (d.model == "gpt2") return bpe_from_gguf(d);
  if (d.model == "llama") return sentencepiece_from_gguf(d);
  throw std::invalid_argument(src + ": tokenizer.ggml.model '" + d.model +
                              "' is not supported (supported: gpt2, llama)");
}

}  // namespace qat::data
