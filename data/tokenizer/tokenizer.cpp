#include "data/tokenizer/tokenizer.h"

#include <filesystem>
#include <stdexcept>

#include "data/tokenizer/bpe_tokenizer.h"
#include "data/tokenizer/sentencepiece_tokenizer.h"

namespace qat::data {

namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json")) return load_tokenizer((p / "tokenizer.json").string());
    if (fs::exists(p / "tokenizer.model")) return load_tokenizer((p / "tokenizer.model").string());
    throw std::runtime_error("load_tokenizer: directory '" + path +
                             "' holds neither tokenizer.json nor tokenizer.model");
  }
  if (!fs::exists(p, ec)) throw std::runtime_error("load_tokenizer: '" + path + "' does not exist");
  if (p.extension() == ".json") return load_bpe_tokenizer_json(path);
  if (p.extension() == ".model") return std::make_unique<SentencePieceTokenizer>(path);
  throw std::runtime_error("load_tokenizer: '" + path +
                           "': expected a tokenizer .json or a SentencePiece .model file");
}

namespace {

bool ends_with_replacement(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0;
}

}  // namespace

std::string StreamingDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::vector<int32_t> prefix(ids_.begin() + prefix_begin_, ids_.begin() + read_begin_);
  const std::vector<int32_t> full(ids_.begin() + prefix_begin_, ids_.end());
  const std::string prefix_text = tokenizer_.decode(prefix, skip_special_);
  const std::string full_text = tokenizer_.decode(full, skip_special_);
  const bool incomplete =
      ends_with_replacement(full_text) && ids_.size() - read_begin_ < kMaxPending;
  if (incomplete || full_text.size() < prefix_text.size() ||
      full_text.compare(0, prefix_text.size(), prefix_text) != 0) {
    if (!incomplete && ids_.size() - read_begin_ >= kMaxPending) return finish();
    return std::string();
  }
  std::string out = full_text.substr(prefix_text.size());
  prefix_begin_ = read_begin_;
  read_begin_ = ids_.size();
  return out;
}

std::string StreamingDecoder::finish() {
  const std::vector<int32_t> prefix(ids_.begin() + prefix_begin_, ids_.begin() + read_begin_);
  const std::vector<int32_t> full(ids_.begin() + prefix_begin_, ids_.end());
  const std::string prefix_text = tokenizer_.decode(prefix, skip_special_);
  const std::string full_text = tokenizer_.decode(full, skip_special_);
  prefix_begin_ = read_begin_ = ids_.size();
  if (full_text.compare(0, prefix_text.size(), prefix_text) == 0) {
    return full_text.substr(prefix_text.size());
  }
  return full_text;  // the context rendered differently: give the whole window rather than lose
                     // text
}

}  // namespace qat::data
