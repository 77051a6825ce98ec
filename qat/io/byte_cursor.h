// Bounds-checked little-endian reads over a byte span, shared by the safetensors and GGUF parsers.
//
// Plain C++ (no libtorch) so the fuzz targets build the parsers alone. Every read checks the
// remaining length first and throws std::runtime_error naming the file and what was being read;
// nothing is ever read or allocated on the strength of an unchecked count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace qat::io {

// The parsers reinterpret little-endian bytes with memcpy; a big-endian host would need swaps.
inline bool host_is_little_endian() {
  const uint16_t one = 1;
  uint8_t first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// a * b, or false on overflow (the checked multiplication the format rules ask for).
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > UINT64_MAX / a) return false;
  *out = a * b;
  return true;
}
inline bool checked_add(uint64_t a, uint64_t b, uint64_t* out) {
  if (b > UINT64_MAX - a) return false;
  *out = a + b;
  return true;
}
// Rounds n up to a multiple of `align` (a power of two); false on overflow.
inline bool checked_pad(uint64_t n, uint64_t align, uint64_t* out) {
  uint64_t t = 0;
  if (!checked_add(n, align - 1, &t)) return false;
  *out = t & ~(align - 1);
  return true;
}

class ByteCursor {
 public:
  // `origin` names the file (or "<buffer>") in every error message.
  ByteCursor(const uint8_t* data, size_t size, std::string origin)
      : data_(data), size_(size), origin_(std::move(origin)) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& origin() const { return origin_; }
  const uint8_t* here() const { return data_ + pos_; }

  // Throws "<origin>: <what>" (the caller's message says what was expected and found).
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(origin_ + ": " + what);
  }

  // Ensures n more bytes exist; `what` names the field for the error message.
  void need(uint64_t n, std::string_view what) const {
    if (n > remaining()) {
      fail("truncated: reading " + std::string(what) + " needs " + std::to_string(n) +
           " bytes at offset " + std::to_string(pos_) + " but only " + std::to_string(remaining()) +
           " remain (file size " + std::to_string(size_) + ")");
    }
  }

  template <class T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_bytes(uint64_t n, std::string_view what) {
    need(n, what);
    std::string_view v(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return v;
  }

  void skip(uint64_t n, std::string_view what) { read_bytes(n, what); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string origin_;
};

}  // namespace qat::io
