#include "data/tokenizer/added_tokens.h"

#include <algorithm>

#include "data/tokenizer/regex.h"
#include "data/tokenizer/utf8.h"

namespace qat::data {

void AddedVocabulary::add(AddedToken token) {
  // A later entry with the same content replaces the earlier one (as a JSON map would).
  auto it = by_content_.find(token.content);
  size_t index;
  if (it != by_content_.end()) {
    index = it->second;
    by_id_.erase(tokens_[index].id);
    tokens_[index] = std::move(token);
  } else {
    index = tokens_.size();
    tokens_.push_back(std::move(token));
    by_content_.emplace(tokens_[index].content, index);
  }
  by_id_[tokens_[index].id] = index;
  if (tokens_[index].content.empty()) return;  // an empty token can never be matched
  int32_t node = 0;
  for (char c : tokens_[index].content) {
    const auto key = static_cast<unsigned char>(c);
    auto found = trie_[node].next.find(key);
    if (found == trie_[node].next.end()) {
      trie_.emplace_back();
      const auto child = static_cast<int32_t>(trie_.size() - 1);
      trie_[node].next.emplace(key, child);
      node = child;
    } else {
      node = found->second;
    }
  }
  trie_[node].token = static_cast<int32_t>(index);
}

const AddedToken* AddedVocabulary::find(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::find(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

namespace {

// Code point that ends at byte `end` (exclusive); text is valid UTF-8.
char32_t last_char(std::string_view text, size_t end) {
  size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
  char32_t cp = 0;
  utf8_decode(text, b, &cp);
  return cp;
}

// HF's single_word test is Rust regex's Unicode \w (letters, marks, decimal digits, connector
// punctuation); the same classes in PCRE2 decide it for the one character next to the match.
bool is_word_char(char32_t c) {
  static const Regex word(R"(^[\p{L}\p{M}\p{Nd}\p{Pc}]$)", "single_word");
  std::string s;
  utf8_append(s, c);
  return !word.find_all(s).empty();
}

}  // namespace

std::vector<TextSegment> AddedVocabulary::split(std::string_view text) const {
  std::vector<TextSegment> out;
  size_t start_offset = 0;  // end of the last emitted piece
  size_t pos = 0;           // where the matcher resumes (HF resumes at the raw match end)
  while (pos < text.size() && !tokens_.empty()) {
    // Longest token starting at pos.
    int32_t best = -1;
    size_t best_len = 0;
    int32_t node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      auto it = trie_[node].next.find(static_cast<unsigned char>(text[i]));
      if (it == trie_[node].next.end()) break;
      node = it->second;
      if (trie_[node].token >= 0) {
        best = trie_[node].token;
        best_len = i + 1 - pos;
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = tokens_[best];
    size_t start = pos, stop = pos + best_len;
    pos = stop;
    if (tok.single_word) {
      const bool start_space = start == 0 || !is_word_char(last_char(text, start));
      char32_t next_cp = 0;
      if (stop < text.size()) utf8_decode(text, stop, &next_cp);
      const bool stop_space = stop == text.size() || !is_word_char(next_cp);
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) {
      size_t s = start;
      while (s > 0 && is_unicode_whitespace(last_char(text, s))) {
        do {
          --s;
        } while (s > 0 && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80);
      }
      start = std::max(s, start_offset);  // spaces already eaten by a previous rstrip stay there
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        char32_t cp = 0;
        const int n = utf8_decode(text, stop, &cp);
        if (!is_unicode_whitespace(cp)) break;
        stop += n;
      }
      pos = stop;
    }
    if (start_offset < start) out.push_back({-1, start_offset, start});
    out.push_back({tok.id, start, stop});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({-1, start_offset, text.size()});
  return out;
}

}  // namespace qat::data
