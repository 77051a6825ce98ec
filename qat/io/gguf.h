// GGUF v3: types, metadata values, and the parser/encoder over bytes (plain C++, no libtorch).
//
// Layout: "GGUF" | u32 version | u64 tensor_count | u64 kv_count | KVs (string key, u32 type,
// value) | tensor infos (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset) |
// zero padding to `general.alignment` (default 32) | data. The reader enforces ggml's rules
// (ggml-org/ggml src/gguf.cpp) and llama.cpp's bounds check; see docs/formats.md. gguf_file.h
// maps a file and dequantizes its tensors into at::Tensor; gguf_writer.h writes one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "qat/io/gguf_value.h"

namespace qat::io {

// ggml tensor types (ggml.h enum ggml_type; the gaps are removed types).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kNVFP4 = 40,
  kQ1_0 = 41,
};

struct GgmlTypeTraits {
  std::string_view name;  // "Q4_K"; empty for an unassigned id
  int block_size;         // elements per block (1 for plain types)
  int type_size;          // bytes per block
};
// nullptr for an id that is not a ggml type (unknown or removed).
const GgmlTypeTraits* ggml_type_traits(uint32_t type);
std::string ggml_type_name(GgmlType type);  // "Q4_K", or "type 77"

// Default and largest alignment of the data section (the largest is ggml's sanity bound).
inline constexpr uint64_t kGgufDefaultAlignment = 32;
inline constexpr uint64_t kGgufMaxAlignment = uint64_t{1} << 20;
inline constexpr size_t kGgufMaxNameBytes =
    63;  // GGML_MAX_NAME - 1 (names are NUL-terminated there)
inline constexpr int kGgufMaxDims = 4;

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // n_dims entries, ne[0] the fastest (GGUF order)
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;  // unpadded size of the data
  int64_t numel() const;
  // torch order: ne reversed (a GGUF [in, out] weight is a torch [out, in] one).
  std::vector<int64_t> torch_shape() const;
  // Bytes of one row along ne[0].
  uint64_t row_bytes() const;
};

struct GgufContents {
  uint32_t version = 3;
  uint64_t alignment = kGgufDefaultAlignment;
  GgufMetadata metadata;
  std::vector<GgufTensorInfo> tensors;  // in file order
  uint64_t data_offset = 0;             // absolute offset of the data section

  // nullptr when absent.
  const GgufTensorInfo* find(const std::string& name) const;
  void reindex();  // after editing `tensors` by hand

 private:
  std::unordered_map<std::string, size_t> index_;
};

// Parses and validates the header of a whole file's bytes (the data is not copied).
// Throws std::runtime_error "<origin>: GGUF: <what was expected>, found <what>".
GgufContents parse_gguf(const uint8_t* data, size_t size, const std::string& origin);

// Size in bytes of a tensor of `type` with these dims; throws naming `what` on a bad shape
// (negative dims, ne[0] not a multiple of the block size, overflow).
uint64_t ggml_nbytes(GgmlType type, const std::vector<int64_t>& ne, const std::string& what);

// The bytes before the data section of a file with this metadata and these tensors (whose
// offsets must already be laid out: see layout_gguf_tensors), padded to `alignment`.
std::string encode_gguf_header(const GgufMetadata& metadata,
                               const std::vector<GgufTensorInfo>& tensors, uint64_t alignment);
// Assigns sequential offsets, each tensor padded to `alignment`; returns the data section size.
uint64_t layout_gguf_tensors(std::vector<GgufTensorInfo>& tensors, uint64_t alignment);
// The alignment a file with this metadata uses (general.alignment, checked, or 32).
uint64_t gguf_alignment(const GgufMetadata& metadata, const std::string& origin);

}  // namespace qat::io
