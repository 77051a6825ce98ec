// Helpers shared by the qat_io tests: pattern tensors (twins of tests/ref/safetensors_io_ref.py),
// byte builders for hand-made (malformed) files, and file I/O.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/helpers.h"

// libtorch's c10/util/logging_is_not_google_glog.h defines a glog-style CHECK(condition) that
// aborts the binary instead of being reported by Catch (and breaks on commas in its argument).
// tests/support/catch_torch.h fixes this for every test binary through the precompiled header;
// restating Catch2 v2's definition here keeps these tests correct whatever the include order.
#undef CHECK
#define CHECK(...) \
  INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace qat::test::io {

// Tensor k of a set: byte j = (31 j + 17 k + 7) mod 256 (bool: (j + k) % 3 == 0), so that every
// bit pattern (NaNs, subnormals, negative zeros) goes through the code under test.
inline at::Tensor pattern_tensor(int k, at::ScalarType dtype, std::vector<int64_t> shape) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  const int64_t n = t.numel() * static_cast<int64_t>(t.element_size());
  auto* p = static_cast<uint8_t*>(t.data_ptr());
  for (int64_t j = 0; j < n; ++j) {
    p[j] = dtype == at::kBool ? static_cast<uint8_t>((j + k) % 3 == 0)
                              : static_cast<uint8_t>((j * 31 + k * 17 + 7) & 0xff);
  }
  return t;
}

// Byte-wise equality of dtype, shape and contents (for any dtype).
inline bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.numel() * ac.element_size()) == 0;
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline at::Tensor read_f32(const std::string& path, std::vector<int64_t> shape) {
  const std::string b = read_file(path);
  at::Tensor t = at::empty(shape, at::kFloat);
  if (b.size() != static_cast<size_t>(t.numel() * 4)) return at::Tensor();
  std::memcpy(t.data_ptr(), b.data(), b.size());
  return t;
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

// Little-endian byte builder for hand-made files.
class Bytes {
 public:
  template <class T>
  Bytes& put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s_.append(b, sizeof(T));
    return *this;
  }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& i64(int64_t v) { return put(v); }
  Bytes& raw(const std::string& v) {
    s_ += v;
    return *this;
  }
  Bytes& str(const std::string& v) {
    u64(v.size());
    s_ += v;
    return *this;
  }  // GGUF string
  Bytes& zeros(size_t n) {
    s_.append(n, '\0');
    return *this;
  }
  Bytes& pad_to(size_t align) { return zeros((align - s_.size() % align) % align); }
  const std::string& bytes() const { return s_; }
  size_t size() const { return s_.size(); }

 private:
  std::string s_;
};

// A safetensors file from a header text and `data_bytes` bytes of data (header length = the
// text's length unless `n_override` is given).
inline std::string safetensors_bytes(const std::string& json, size_t data_bytes,
                                     uint64_t n_override = UINT64_MAX) {
  Bytes b;
  b.u64(n_override == UINT64_MAX ? json.size() : n_override).raw(json).zeros(data_bytes);
  return b.bytes();
}

}  // namespace qat::test::io
