// ggml's quantized block types and the project's fake-quant formats, one table for both
// directions, and the dequantization of k-quant blocks to float32 (plain C++, no libtorch, so the
// fuzz targets build it alone; the block math is ops/kquant_math.h, whose results equal the
// `gguf` Python package's dequantize bit for bit).
#pragma once

#include <cstdint>
#include <optional>

#include "qat/io/gguf.h"
#include "qat/scheme/format.h"

namespace qat::io {

// Each ggml block type that a gguf_* format stores exactly, as it is.
struct BlockFormat {
  GgmlType type;
  scheme::Format format;
};
inline constexpr BlockFormat kBlockFormats[] = {
    {GgmlType::kQ8_0, scheme::Format::kQ8_0}, {GgmlType::kQ4_0, scheme::Format::kQ4_0},
    {GgmlType::kQ4_1, scheme::Format::kQ4_1}, {GgmlType::kQ5_0, scheme::Format::kQ5_0},
    {GgmlType::kQ5_1, scheme::Format::kQ5_1}, {GgmlType::kQ4_K, scheme::Format::kQ4_K},
    {GgmlType::kQ5_K, scheme::Format::kQ5_K}, {GgmlType::kQ6_K, scheme::Format::kQ6_K},
};

// The format a block type stores (nullopt: not a block type of ours).
constexpr std::optional<scheme::Format> block_format(GgmlType t) {
  for (const auto& b : kBlockFormats) {
    if (b.type == t) return b.format;
  }
  return std::nullopt;
}
// The block type that stores a format as it is (nullopt: int, nf4, fp8, ...).
constexpr std::optional<GgmlType> block_type(scheme::Format f) {
  for (const auto& b : kBlockFormats) {
    if (b.format == f) return b.type;
  }
  return std::nullopt;
}
constexpr bool is_kquant_type(GgmlType t) {
  const auto f = block_format(t);
  return f.has_value() && scheme::is_kquant(*f);
}

// IEEE binary16 bits -> float (exact, subnormals, infinities and NaN included).
float fp16_to_fp32(uint16_t h);

// `n_blocks` k-quant blocks of type `t` (is_kquant_type) at `blocks` -> n_blocks * 256 floats.
void dequantize_kquant_blocks(GgmlType t, const uint8_t* blocks, int64_t n_blocks, float* out);

}  // namespace qat::io
