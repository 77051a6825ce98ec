// ggml's quantized block types and the project's fake-quant formats (both directions, derived
// from scheme::kFormatTraits), and the dequantization of k-quant blocks to float32 (plain C++, no
// libtorch, so the fuzz targets build it alone; the block math is ops/kquant_math.h, whose results
// equal the `gguf` Python package's dequantize bit for bit).
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "qat/io/gguf.h"
#include "qat/scheme/format.h"

namespace qat::io {

// Each ggml block type that a gguf_* format stores exactly, as it is: the formats whose row in
// scheme::kFormatTraits has a GGUF type, in Format order.
struct BlockFormat {
  GgmlType type;
  scheme::Format format;
};
namespace detail {
constexpr int count_block_formats() {
  int n = 0;
  for (const scheme::FormatTraits& t : scheme::kFormatTraits) n += t.gguf.type >= 0 ? 1 : 0;
  return n;
}
constexpr std::array<BlockFormat, count_block_formats()> make_block_formats() {
  std::array<BlockFormat, count_block_formats()> out{};
  size_t i = 0;
  for (const scheme::FormatTraits& t : scheme::kFormatTraits) {
    if (t.gguf.type >= 0) out[i++] = {static_cast<GgmlType>(t.gguf.type), t.format};
  }
  return out;
}
}  // namespace detail
inline constexpr auto kBlockFormats = detail::make_block_formats();

// The format a block type stores (nullopt: not a block type of ours).
constexpr std::optional<scheme::Format> block_format(GgmlType t) {
  for (const auto& b : kBlockFormats) {
    if (b.type == t) return b.format;
  }
  return std::nullopt;
}
// The block type that stores a format as it is (nullopt: int, nf4, fp8, ...).
constexpr std::optional<GgmlType> block_type(scheme::Format f) {
  const int id = scheme::traits(f).gguf.type;
  if (id < 0) return std::nullopt;
  return static_cast<GgmlType>(id);
}
// GgmlType's enumerators (ggml.h's ids, written out for the reader) agree with the rows.
static_assert(block_type(scheme::Format::kQ8_0) == GgmlType::kQ8_0 &&
                  block_type(scheme::Format::kQ4_0) == GgmlType::kQ4_0 &&
                  block_type(scheme::Format::kQ4_1) == GgmlType::kQ4_1 &&
                  block_type(scheme::Format::kQ5_0) == GgmlType::kQ5_0 &&
                  block_type(scheme::Format::kQ5_1) == GgmlType::kQ5_1 &&
                  block_type(scheme::Format::kQ4_K) == GgmlType::kQ4_K &&
                  block_type(scheme::Format::kQ5_K) == GgmlType::kQ5_K &&
                  block_type(scheme::Format::kQ6_K) == GgmlType::kQ6_K,
              "GgmlType and scheme::kFormatTraits disagree on a ggml type id");
constexpr bool is_kquant_type(GgmlType t) {
  const auto f = block_format(t);
  return f.has_value() && scheme::is_kquant(*f);
}

// IEEE binary16 bits -> float (exact, subnormals, infinities and NaN included).
float fp16_to_fp32(uint16_t h);

// `n_blocks` k-quant blocks of type `t` (is_kquant_type) at `blocks` -> n_blocks * 256 floats.
void dequantize_kquant_blocks(GgmlType t, const uint8_t* blocks, int64_t n_blocks, float* out);

}  // namespace qat::io
