// safetensors: header parsing and header writing over bytes (plain C++, no libtorch).
//
// Layout: u64 little-endian N | N bytes of UTF-8 JSON | data. The JSON maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data start) and may
// hold "__metadata__": {string: string}. The reader enforces every rule of the reference
// implementation (huggingface/safetensors, tensor.rs) -- see docs/formats.md for the list and the
// error messages. safetensors_torch.h turns the parsed entries into at::Tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qat::io {

// Every dtype of the format, in the reference's enum order (the writer sorts by it, largest
// first, as the reference does, so our files are byte-identical to Python's save_file).
enum class SafetensorsDtype : uint8_t {
  kBool,
  kF4,
  kF6E2M3,
  kF6E3M2,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kF8E8M0,
  kF8E4M3Fnuz,
  kF8E5M2Fnuz,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kC64,
  kF64,
  kI64,
  kU64,
};
inline constexpr int kNumSafetensorsDtypes = 22;

struct SafetensorsDtypeTraits {
  std::string_view name;  // as written in the header ("BF16")
  int bits;               // per element (F4 = 4, F6_* = 6: sub-byte formats)
};

// clang-format off
inline constexpr SafetensorsDtypeTraits kSafetensorsDtypes[kNumSafetensorsDtypes] = {
  {"BOOL", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8}, {"I8", 8},
  {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8},
  {"I16", 16}, {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32}, {"U32", 32}, {"F32", 32},
  {"C64", 64}, {"F64", 64}, {"I64", 64}, {"U64", 64},
};
// clang-format on

constexpr const SafetensorsDtypeTraits& traits(SafetensorsDtype d) {
  return kSafetensorsDtypes[static_cast<int>(d)];
}
std::optional<SafetensorsDtype> safetensors_dtype_from_name(std::string_view name);

// Largest header the reader accepts (the reference's limit).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsTensorInfo {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::kF32;
  std::vector<int64_t> shape;  // every entry checked to fit int64
  uint64_t begin = 0;          // [begin, end) relative to data_start
  uint64_t end = 0;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<SafetensorsTensorInfo> tensors;  // in header (JSON) order
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N: absolute offset of the data section

  // nullptr when absent.
  const SafetensorsTensorInfo* find(const std::string& name) const;

 private:
  friend SafetensorsHeader parse_safetensors(const uint8_t*, size_t, const std::string&);
  std::unordered_map<std::string, size_t> index_;
};

// Parses and validates a whole file's bytes. `origin` names the file in error messages.
// Throws std::runtime_error "<origin>: safetensors: <what was expected>, found <what>".
SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& origin);

// What the writer needs to know about one tensor.
struct SafetensorsEntry {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::kF32;
  std::vector<int64_t> shape;
};

// The header of a file holding `entries`: the entries in write order (dtype descending, then
// name, as the reference writer), each with its offsets, and the bytes to write before the data
// (u64 N + JSON padded with spaces to a multiple of 8). The metadata always carries
// "format": "pt" (transformers refuses other formats); a user "format" other than "pt" throws.
struct SafetensorsLayout {
  std::vector<SafetensorsTensorInfo> tensors;  // write order; data is written in this order
  std::string header_bytes;
  uint64_t data_bytes = 0;
};
SafetensorsLayout plan_safetensors(const std::vector<SafetensorsEntry>& entries,
                                   const std::map<std::string, std::string>& metadata);

// numel * bits / 8 with checked arithmetic; nullopt on overflow or a partial byte.
std::optional<uint64_t> safetensors_nbytes(SafetensorsDtype dtype,
                                           const std::vector<int64_t>& shape);

}  // namespace qat::io
