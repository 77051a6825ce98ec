// Dequantization of ggml's k-quant blocks Q4_K and Q6_K to float32 (plain C++, no libtorch, so
// the fuzz targets build it alone). The block math is ops/kquant_math.h; results equal the `gguf`
// Python package's dequantize bit for bit.
#pragma once

#include <cstdint>

namespace qat::io {

inline constexpr int kQkK = 256;             // elements per k-quant super-block
inline constexpr int kQ4KBlockBytes = 144;   // f16 d, f16 dmin, u8 scales[12], u8 qs[128]
inline constexpr int kQ6KBlockBytes = 210;   // u8 ql[128], u8 qh[64], i8 scales[16], f16 d

// IEEE binary16 bits -> float (exact, subnormals, infinities and NaN included).
float fp16_to_fp32(uint16_t h);

// `n_blocks` blocks at `blocks` -> n_blocks * 256 floats at `out`.
void dequantize_q4_k(const uint8_t* blocks, int64_t n_blocks, float* out);
void dequantize_q6_k(const uint8_t* blocks, int64_t n_blocks, float* out);

}  // namespace qat::io
