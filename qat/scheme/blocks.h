// ggml's packed block structs (ggml-common.h), one per GGUF block format of the traits table, with
// static_asserts that tie each struct's size to its row's block_bytes and its fields to the
// offsets the packing code uses. fp16 values are their IEEE binary16 bits, little-endian as the
// file holds them; every struct has 2-byte alignment and no padding, so an array of them is the
// bytes of a GGUF tensor row.
//
// The kernels read and write blocks as bytes (ops/quant_math.h, ops/kquant_math.h, ops/pack.cpp)
// at the offsets below (offsetof), never through a struct pointer into a byte buffer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "qat/scheme/format.h"

namespace qat::scheme {

// ---- 32-element blocks ----------------------------------------------------------------------
// In the 4- and 5-bit formats byte j of qs holds element j in its low nibble and element j+16 in
// its high one; bit j of the little-endian qh holds the fifth bit of element j.

struct BlockQ8_0 {
  uint16_t d;     // fp16 scale
  int8_t qs[32];  // codes
};
struct BlockQ4_0 {
  uint16_t d;      // fp16 scale; y = (q - 8) * d
  uint8_t qs[16];  // nibbles
};
struct BlockQ4_1 {
  uint16_t d;      // fp16 scale
  uint16_t m;      // fp16 min; y = q * d + m
  uint8_t qs[16];  // nibbles
};
struct BlockQ5_0 {
  uint16_t d;      // fp16 scale; y = (q - 16) * d
  uint8_t qh[4];   // fifth bits
  uint8_t qs[16];  // low nibbles
};
struct BlockQ5_1 {
  uint16_t d;      // fp16 scale
  uint16_t m;      // fp16 min; y = q * d + m
  uint8_t qh[4];   // fifth bits
  uint8_t qs[16];  // low nibbles
};

// ---- 256-element super-blocks (ops/kquant_math.h describes the bit layouts) ------------------

struct BlockQ4_K {
  uint16_t d;          // fp16 super-block scale of the sub-block scales
  uint16_t dmin;       // fp16 super-block scale of the sub-block mins
  uint8_t scales[12];  // 8 six-bit scales and 8 six-bit mins
  uint8_t qs[128];     // nibbles
};
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];   // fifth bits
  uint8_t qs[128];  // low nibbles
};
struct BlockQ6_K {
  uint8_t ql[128];    // low 4 bits
  uint8_t qh[64];     // high 2 bits
  int8_t scales[16];  // 8-bit sub-block scales
  uint16_t d;         // fp16 super-block scale
};

// sizeof the format's block struct; 0 for the formats without one. Exhaustive: a new Format
// makes -Wswitch name this function, and the static_assert below checks the row.
constexpr int block_struct_bytes(Format f) {
  switch (f) {
    case Format::kInt:
    case Format::kUInt:
    case Format::kFp8E4M3:
    case Format::kFp8E5M2:
    case Format::kNf4:
      return 0;
    case Format::kQ8_0:
      return sizeof(BlockQ8_0);
    case Format::kQ4_0:
      return sizeof(BlockQ4_0);
    case Format::kQ4_1:
      return sizeof(BlockQ4_1);
    case Format::kQ5_0:
      return sizeof(BlockQ5_0);
    case Format::kQ5_1:
      return sizeof(BlockQ5_1);
    case Format::kQ4_K:
      return sizeof(BlockQ4_K);
    case Format::kQ5_K:
      return sizeof(BlockQ5_K);
    case Format::kQ6_K:
      return sizeof(BlockQ6_K);
  }
  return -1;  // not a Format: never equals a row
}

namespace detail {
constexpr bool block_structs_match_rows() {
  for (int f = 0; f < kNumFormats; ++f) {
    if (block_struct_bytes(static_cast<Format>(f)) != kFormatTraits[f].block_bytes) return false;
  }
  return true;
}
}  // namespace detail
static_assert(detail::block_structs_match_rows(),
              "a block struct's size differs from its row's block_bytes in kFormatTraits");

// The layouts the packing code assumes (ggml-common.h's static_asserts, spelled as offsets).
static_assert(sizeof(BlockQ8_0) == 34 && offsetof(BlockQ8_0, qs) == 2, "block_q8_0");
static_assert(sizeof(BlockQ4_0) == 18 && offsetof(BlockQ4_0, qs) == 2, "block_q4_0");
static_assert(sizeof(BlockQ4_1) == 20 && offsetof(BlockQ4_1, m) == 2 &&
                  offsetof(BlockQ4_1, qs) == 4,
              "block_q4_1");
static_assert(sizeof(BlockQ5_0) == 22 && offsetof(BlockQ5_0, qh) == 2 &&
                  offsetof(BlockQ5_0, qs) == 6,
              "block_q5_0");
static_assert(sizeof(BlockQ5_1) == 24 && offsetof(BlockQ5_1, m) == 2 &&
                  offsetof(BlockQ5_1, qh) == 4 && offsetof(BlockQ5_1, qs) == 8,
              "block_q5_1");
static_assert(sizeof(BlockQ4_K) == 144 && offsetof(BlockQ4_K, scales) == 4 &&
                  offsetof(BlockQ4_K, qs) == 16,
              "block_q4_K");
static_assert(sizeof(BlockQ5_K) == 176 && offsetof(BlockQ5_K, scales) == 4 &&
                  offsetof(BlockQ5_K, qh) == 16 && offsetof(BlockQ5_K, qs) == 48,
              "block_q5_K");
static_assert(sizeof(BlockQ6_K) == 210 && offsetof(BlockQ6_K, qh) == 128 &&
                  offsetof(BlockQ6_K, scales) == 192 && offsetof(BlockQ6_K, d) == 208,
              "block_q6_K");

// Where the fields of a 32-element block start (the packing in ops/pack.cpp is generic over
// them): the fp16 d at 0, then the fp16 min, the fifth bits and the codes; -1 for a field the
// format lacks; all -1 (and 0 bytes) for the formats without 32-element blocks.
struct Block32Layout {
  int m;   // offset of the fp16 min (Q4_1, Q5_1)
  int qh;  // offset of the 4 bytes of fifth bits (Q5_0, Q5_1)
  int qs;  // offset of the codes
  int bytes;
};
constexpr Block32Layout block32_layout(Format f) {
  switch (f) {
    case Format::kQ8_0:
      return {-1, -1, offsetof(BlockQ8_0, qs), sizeof(BlockQ8_0)};
    case Format::kQ4_0:
      return {-1, -1, offsetof(BlockQ4_0, qs), sizeof(BlockQ4_0)};
    case Format::kQ4_1:
      return {offsetof(BlockQ4_1, m), -1, offsetof(BlockQ4_1, qs), sizeof(BlockQ4_1)};
    case Format::kQ5_0:
      return {-1, offsetof(BlockQ5_0, qh), offsetof(BlockQ5_0, qs), sizeof(BlockQ5_0)};
    case Format::kQ5_1:
      return {offsetof(BlockQ5_1, m), offsetof(BlockQ5_1, qh), offsetof(BlockQ5_1, qs),
              sizeof(BlockQ5_1)};
    case Format::kInt:
    case Format::kUInt:
    case Format::kFp8E4M3:
    case Format::kFp8E5M2:
    case Format::kNf4:
    case Format::kQ4_K:
    case Format::kQ5_K:
    case Format::kQ6_K:
      break;
  }
  return {-1, -1, -1, 0};
}

}  // namespace qat::scheme
