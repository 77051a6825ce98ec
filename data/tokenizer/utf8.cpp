#include "data/tokenizer/utf8.h"

namespace qat::data {

namespace {

// Length of the valid UTF-8 sequence at s[pos], or 0 when the bytes there are not one. The
// second-byte ranges follow the Unicode "well-formed byte sequences" table (no overlongs, no
// surrogates, nothing above U+10FFFF). `*valid_prefix` is set to the number of bytes that
// could still start a valid sequence (the "maximal subpart" used by lossy decoding).
int valid_sequence(std::string_view s, size_t pos, int* valid_prefix) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  *valid_prefix = 1;
  if (b0 < 0x80) return 1;
  int len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int i = 1; i < len; ++i) {
    if (pos + i >= s.size()) return 0;
    const auto b = static_cast<unsigned char>(s[pos + i]);
    const unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
    *valid_prefix = i + 1;
  }
  return len;
}

}  // namespace

size_t first_invalid_utf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    int prefix = 0;
    const int n = valid_sequence(s, pos, &prefix);
    if (n == 0) return pos;
    pos += n;
  }
  return std::string_view::npos;
}

int utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

int utf8_decode(std::string_view s, size_t pos, char32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  int n = utf8_length(b0);
  if (pos + n > s.size()) n = 1;
  char32_t c = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (int i = 1; i < n; ++i) c = (c << 6) | (static_cast<unsigned char>(s[pos + i]) & 0x3F);
  *cp = c;
  return n;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    int prefix = 0;
    const int n = valid_sequence(bytes, pos, &prefix);
    if (n > 0) {
      out.append(bytes.substr(pos, n));
      pos += n;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD replaces the maximal invalid subpart
      pos += prefix;
    }
  }
  return out;
}

bool is_unicode_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

const ByteLevelTable& ByteLevelTable::get() {
  static const ByteLevelTable table;
  return table;
}

ByteLevelTable::ByteLevelTable() {
  char_to_byte_.fill(-1);
  // Printable Latin-1 bytes stand for themselves; the other 68 bytes are numbered from U+0100
  // upwards in byte order (GPT-2's bytes_to_unicode).
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const int cp = printable ? b : next++;
    utf8_append(byte_to_char_[b], static_cast<char32_t>(cp));
    char_to_byte_[cp] = static_cast<int16_t>(b);
  }
}

std::string ByteLevelTable::encode(std::string_view text) const {
  std::string out;
  out.reserve(text.size() * 2);
  for (char c : text) out += byte_to_char_[static_cast<unsigned char>(c)];
  return out;
}

int ByteLevelTable::decode_char(char32_t cp) const {
  return cp < char_to_byte_.size() ? char_to_byte_[cp] : -1;
}

}  // namespace qat::data
