#include "qat/io/gguf_blocks.h"

#include <stdexcept>

#include "ops/kquant_math.h"

namespace qat::io {

float fp16_to_fp32(uint16_t h) {
  return ops::math::half_bits_to_float(h);
}

// The block code is the one fake quant and export use (ops/kquant_math.h), so a k-quant GGUF
// reads back exactly as trained.
void dequantize_kquant_blocks(GgmlType t, const uint8_t* blocks, int64_t n_blocks, float* out) {
  if (!is_kquant_type(t))
    throw std::invalid_argument("dequantize_kquant_blocks: not a k-quant type");
  const scheme::Format f = *block_format(t);
  const int bytes = ops::kquant::block_bytes(f);
  for (int64_t b = 0; b < n_blocks; ++b) {
    ops::kquant::dequantize_block(f, blocks + b * bytes, out + b * ops::kquant::kSuperBlock);
  }
}

}  // namespace qat::io
