// UTF-8 helpers shared by the tokenizers: validation, code point iteration, lossy decoding and
// GPT-2's byte <-> printable-character table used by byte-level BPE.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace qat::data {

// Byte offset of the first invalid UTF-8 sequence in `s`, or npos when `s` is valid UTF-8
// (overlong forms, surrogates and code points above U+10FFFF are invalid, as in Rust's str).
size_t first_invalid_utf8(std::string_view s);

// Decodes the code point starting at s[pos] (s must be valid UTF-8) and returns its byte length.
int utf8_decode(std::string_view s, size_t pos, char32_t* cp);
// Length in bytes of the UTF-8 sequence that starts with byte `lead` (1 for invalid leads).
int utf8_length(unsigned char lead);
void utf8_append(std::string& out, char32_t cp);

// Replaces invalid UTF-8 with U+FFFD exactly like Rust's String::from_utf8_lossy (one U+FFFD per
// maximal invalid subpart), which is what HF tokenizers' decoders return.
std::string utf8_lossy(std::string_view bytes);

// Unicode White_Space (what Rust's char::is_whitespace tests; HF's lstrip/rstrip use it).
bool is_unicode_whitespace(char32_t cp);

// GPT-2's reversible map from the 256 byte values to printable code points, so that a BPE
// vocabulary never contains raw control bytes or spaces ("Ġ" is the space byte).
class ByteLevelTable {
 public:
  static const ByteLevelTable& get();
  // UTF-8 text of the character that stands for byte b.
  const std::string& encode_byte(uint8_t b) const { return byte_to_char_[b]; }
  // Maps every byte of `text` to its character.
  std::string encode(std::string_view text) const;
  // The byte a code point stands for, or -1 when it is not one of the 256 characters.
  int decode_char(char32_t cp) const;

 private:
  ByteLevelTable();
  std::array<std::string, 256> byte_to_char_;
  std::array<int16_t, 324> char_to_byte_;  // code points < 324 cover the whole table
};

}  // namespace qat::data
