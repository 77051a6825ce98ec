#include "data/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <stdexcept>

#include "data/tokenizer/utf8.h"

namespace qat::data {

BpeTokenizer::BpeTokenizer(BpeTokenizerSpec spec)
    : source_(spec.source),
      model_(std::move(spec.vocab), spec.merges, std::move(spec.options), spec.source),
      pre_tokenizer_(std::move(spec.pre_tokenizer)),
      post_template_(std::move(spec.post_template)),
      decoder_(spec.decoder) {
  vocab_size_ = model_.size();
  for (auto& t : spec.added_tokens) {
    if (t.id < 0) {
      throw std::invalid_argument(source_ + ": added token '" + t.content + "' has negative id " +
                                  std::to_string(t.id));
    }
    // Added ids extend the model's range only a little in real files; a huge one is an error
    // because decoding indexes by id.
    if (t.id >= vocab_size_ + 1000000) {
      throw std::invalid_argument(source_ + ": added token '" + t.content + "' id " +
                                  std::to_string(t.id) + " is far beyond the vocabulary size " +
                                  std::to_string(vocab_size_));
    }
    vocab_size_ = std::max(vocab_size_, t.id + 1);
    added_.add(std::move(t));
  }
  for (const auto& piece : post_template_) {
    for (int32_t id : piece.ids) {
      if (id < 0 || id >= vocab_size_) {
        throw std::invalid_argument(source_ + ": post_processor: special token id " +
                                    std::to_string(id) + " is outside the vocabulary [0, " +
                                    std::to_string(vocab_size_) + ")");
      }
    }
  }
  special_ = spec.special;
}

std::optional<int32_t> BpeTokenizer::token_to_id(std::string_view token) const {
  if (const AddedToken* t = added_.find(token)) return t->id;
  return model_.token_to_id(token);
}

std::string BpeTokenizer::id_to_token(int32_t id) const {
  if (const AddedToken* t = added_.find(id)) return t->content;
  const std::string& s = model_.id_to_token(id);
  if (s.empty()) {
    throw std::out_of_range(source_ + ": token id " + std::to_string(id) +
                            " is not in the vocabulary (size " + std::to_string(vocab_size_) + ")");
  }
  return s;
}

bool BpeTokenizer::is_special(int32_t id) const {
  const AddedToken* t = added_.find(id);
  return t && t->special;
}

void BpeTokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  if (pre_tokenizer_.empty()) {
    model_.encode_word(text, out);
    return;
  }
  for (const std::string& piece : pre_tokenizer_.run(text)) model_.encode_word(piece, out);
}

std::vector<int32_t> BpeTokenizer::encode_impl(std::string_view text, bool add_special,
                                               bool parse_special) const {
  const size_t bad = first_invalid_utf8(text);
  if (bad != std::string_view::npos) {
    throw std::invalid_argument(source_ + ": encode: input is not valid UTF-8 at byte " +
                                std::to_string(bad));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (parse_special && !added_.empty()) {
    for (const TextSegment& seg : added_.split(text)) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
      } else {
        encode_text(text.substr(seg.begin, seg.end - seg.begin), ids);
      }
    }
  } else {
    encode_text(text, ids);
  }
  if (!add_special || post_template_.empty()) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (const auto& piece : post_template_) {
    const auto& src = piece.is_sequence ? ids : piece.ids;
    out.insert(out.end(), src.begin(), src.end());
  }
  return out;
}

std::string BpeTokenizer::decode_impl(const std::vector<int32_t>& ids, bool skip_special) const {
  const auto& table = ByteLevelTable::get();
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_) {
      throw std::out_of_range(source_ + ": decode: token id " + std::to_string(id) +
                              " is outside the vocabulary [0, " + std::to_string(vocab_size_) +
                              ")");
    }
    const AddedToken* added = added_.find(id);
    if (added && skip_special && added->special) continue;
    const std::string& token = added ? added->content : model_.id_to_token(id);
    if (!added && token.empty()) continue;  // a hole in a sparse vocab decodes to nothing (HF)
    if (decoder_ == BpeDecoder::kNone) {
      if (!first) bytes += ' ';
      bytes += token;
      first = false;
      continue;
    }
    // HF's ByteLevel decoder: a token whose characters all belong to the byte alphabet gives
    // those bytes; any other token (e.g. an added "<|im_start|>" with a space) is copied as is.
    std::string decoded;
    bool all_bytes = true;
    for (size_t pos = 0; pos < token.size();) {
      char32_t cp = 0;
      pos += utf8_decode(token, pos, &cp);
      const int b = table.decode_char(cp);
      if (b < 0) {
        all_bytes = false;
        break;
      }
      decoded += static_cast<char>(b);
    }
    bytes += all_bytes ? decoded : token;
  }
  return decoder_ == BpeDecoder::kNone ? bytes : utf8_lossy(bytes);
}

}  // namespace qat::data
