// Packing codes into storage (device-agnostic ATen bit operations; not on a hot path).
//
// Bitwise packing runs along the last dimension: a code takes scheme::storage_bits(bits) bits
// (2, 4 or 8), the first element in the lowest bits of its byte, except NF4, whose first element
// takes the HIGH nibble as bitsandbytes stores it. GGUF formats pack into ggml's block structs.
#pragma once

#include <ATen/core/Tensor.h>

#include "ops/quantize.h"

namespace qat::ops {

// codes [..., K] uint8 -> [..., K * storage_bits / 8] uint8.
at::Tensor pack_codes(const at::Tensor& codes, const QuantSpec& spec);
// Inverse of pack_codes: [..., K * storage_bits / 8] -> [..., K] uint8 codes (int codes come back
// as their two's complement byte, as ops::quantize gives them).
at::Tensor unpack_codes(const at::Tensor& packed, const QuantSpec& spec);

// GGUF: codes [..., K] + qparams -> [..., K/32 * block_bytes] uint8 in ggml's block layout
// (block_q8_0 {f16 d; i8 qs[32]}, block_q4_0 {f16 d; u8 qs[16]}, block_q4_1 {f16 d; f16 m; u8
// qs[16]}, block_q5_0 {f16 d; u8 qh[4]; u8 qs[16]}, block_q5_1 {f16 d; f16 m; u8 qh[4]; u8 qs[16]};
// in the 4- and 5-bit formats byte j of qs holds element j in its low nibble and element j+16 in
// its high one, and bit j of the 5-bit formats' little-endian qh holds the fifth bit of element j).
at::Tensor pack_gguf_blocks(const at::Tensor& codes, const QuantSpec& spec, const QParams& qp);
struct UnpackedBlocks {
  at::Tensor codes;  // [..., K]
  QParams qparams;   // scale = the fp16 d as float, zero = the fp16 m as float (q4_1)
};
UnpackedBlocks unpack_gguf_blocks(const at::Tensor& blocks, const QuantSpec& spec);

}  // namespace qat::ops
