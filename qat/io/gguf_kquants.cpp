#include "qat/io/gguf_kquants.h"

#include "ops/kquant_math.h"

namespace qat::io {

float fp16_to_fp32(uint16_t h) { return ops::math::half_bits_to_float(h); }

// Q4_K: y = (d * sc) * q - (dmin * m); Q6_K: y = (d * sc) * q. The block code is the one fake
// quant and export use (ops/kquant_math.h), so a k-quant GGUF reads back exactly as trained.
void dequantize_q4_k(const uint8_t* blocks, int64_t n_blocks, float* out) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    ops::kquant::dequantize_block_q4k(blocks + b * kQ4KBlockBytes, out + b * kQkK);
  }
}

void dequantize_q6_k(const uint8_t* blocks, int64_t n_blocks, float* out) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    ops::kquant::dequantize_block_q6k(blocks + b * kQ6KBlockBytes, out + b * kQkK);
  }
}

}  // namespace qat::io
