// The quantization formats: one enum and one traits table (as ggml's type_traits[]).
//
// Everything that quantizes -- fake quant, convert, export, import -- reads this table. Adding a
// format means: one enum value, one row below, its scalar quantize/dequantize in
// ops/quant_math.h, and its tests.
#pragma once

#include <cstdint>
#include <string_view>

namespace qat::scheme {

enum class Format : uint8_t {
  kInt,      // signed integer codes, 2..8 bits, symmetric (zero point 0)
  kUInt,     // unsigned integer codes, 2..8 bits, asymmetric (integer zero point)
  kFp8E4M3,  // OCP fp8 e4m3fn, saturating to +-448
  kFp8E5M2,  // OCP fp8 e5m2, saturating to +-57344
  kNf4,      // bitsandbytes NormalFloat4 values, absmax blocks
  kQ8_0,     // ggml Q8_0: 32-element blocks, fp16 d, int8 codes
  kQ4_0,     // ggml Q4_0: 32-element blocks, fp16 d, 4-bit codes offset by 8
  kQ4_1,     // ggml Q4_1: 32-element blocks, fp16 d and fp16 min, 4-bit codes
  kQ5_0,     // ggml Q5_0: 32-element blocks, fp16 d, 5-bit codes offset by 16
  kQ5_1,     // ggml Q5_1: 32-element blocks, fp16 d and fp16 min, 5-bit codes
  kQ4_K,     // ggml Q4_K: 256-element super-blocks of 8 x 32, 6-bit scales and mins, 4-bit codes
  kQ5_K,     // ggml Q5_K: 256-element super-blocks of 8 x 32, 6-bit scales and mins, 5-bit codes
  kQ6_K,     // ggml Q6_K: 256-element super-blocks of 16 x 16, int8 scales, 6-bit codes
};
inline constexpr int kNumFormats = 13;

// How a group's range becomes its scale (and zero).
enum class Mapping : uint8_t {
  kSymmetric,   // scale from max|x|; zero is 0
  kAsymmetric,  // scale and zero from [min(x,0), max(x,0)]
  kAbsmax,      // scale = max|x| (NF4); codes index a value table in [-1, 1]
  kGgufBlock,   // ggml's own per-block rule (see quant_math.h)
  kGgufSuper,   // ggml k-quants: a per-super-block search for sub-block scales (kquant_math.h)
};

// Storage type of a scale or of a GGUF block's d/m.
enum class ScaleDtype : uint8_t { kFloat32, kFloat16, kBFloat16 };

struct FormatTraits {
  std::string_view name;  // as written in configs ("int", "uint", "fp8_e4m3", ...)
  int min_bits;           // inclusive range of the `bits` a user may ask for
  int max_bits;
  Mapping mapping;
  int fixed_block;         // >0: the format owns its grouping (GGUF: 32 or 256 along the last dim)
  int block_bytes;         // GGUF: bytes of one packed block; 0 when codes are packed bitwise
  bool fixed_scale_dtype;  // true: scale_dtype is part of the format (GGUF: fp16), not a choice
  ScaleDtype scale_dtype;  // the default (or the only) scale storage type
  bool high_nibble_first;  // sub-byte packing order: NF4 follows bitsandbytes (first = high)
  bool learnable_ok;       // LSQ/LSQ+ apply (integer grids only)
};

// clang-format off
inline constexpr FormatTraits kFormatTraits[kNumFormats] = {
  //  name        bits  mapping               block bytes fixed  scale dtype            hi-nib lsq
  {"int",         2, 8, Mapping::kSymmetric,  0,    0,    false, ScaleDtype::kFloat32,  false, true},
  {"uint",        2, 8, Mapping::kAsymmetric, 0,    0,    false, ScaleDtype::kFloat32,  false, true},
  {"fp8_e4m3",    8, 8, Mapping::kSymmetric,  0,    0,    false, ScaleDtype::kFloat32,  false, false},
  {"fp8_e5m2",    8, 8, Mapping::kSymmetric,  0,    0,    false, ScaleDtype::kFloat32,  false, false},
  {"nf4",         4, 4, Mapping::kAbsmax,     0,    0,    false, ScaleDtype::kFloat32,  true,  false},
  {"gguf_q8_0",   8, 8, Mapping::kGgufBlock,  32,   34,   true,  ScaleDtype::kFloat16,  false, false},
  {"gguf_q4_0",   4, 4, Mapping::kGgufBlock,  32,   18,   true,  ScaleDtype::kFloat16,  false, false},
  {"gguf_q4_1",   4, 4, Mapping::kGgufBlock,  32,   20,   true,  ScaleDtype::kFloat16,  false, false},
  {"gguf_q5_0",   5, 5, Mapping::kGgufBlock,  32,   22,   true,  ScaleDtype::kFloat16,  false, false},
  {"gguf_q5_1",   5, 5, Mapping::kGgufBlock,  32,   24,   true,  ScaleDtype::kFloat16,  false, false},
  {"gguf_q4_k",   4, 4, Mapping::kGgufSuper,  256,  144,  true,  ScaleDtype::kFloat16,  false, false},
  {"gguf_q5_k",   5, 5, Mapping::kGgufSuper,  256,  176,  true,  ScaleDtype::kFloat16,  false, false},
  {"gguf_q6_k",   6, 6, Mapping::kGgufSuper,  256,  210,  true,  ScaleDtype::kFloat16,  false, false},
};
// clang-format on

constexpr const FormatTraits& traits(Format f) {
  return kFormatTraits[static_cast<int>(f)];
}

// ggml's k-quants: no per-group qparams to choose or pass around; a super-block quantizes as a
// whole (ops/kquant.h), so choose_qparams/quantize/dequantize do not take them.
constexpr bool is_kquant(Format f) {
  return traits(f).mapping == Mapping::kGgufSuper;
}

// Smallest and largest code of an integer format, as stored (before any zero point).
struct CodeRange {
  int qmin;
  int qmax;
};
constexpr CodeRange code_range(Format f, int bits) {
  switch (f) {
    case Format::kInt:
      return {-(1 << (bits - 1)), (1 << (bits - 1)) - 1};
    case Format::kUInt:
      return {0, (1 << bits) - 1};
    case Format::kNf4:
    case Format::kQ4_0:
    case Format::kQ4_1:
    case Format::kQ4_K:
      return {0, 15};
    case Format::kQ5_0:
    case Format::kQ5_1:
    case Format::kQ5_K:
      return {0, 31};
    case Format::kQ6_K:
      return {-32, 31};
    case Format::kQ8_0:
      return {-128, 127};
    case Format::kFp8E4M3:
    case Format::kFp8E5M2:
      return {0, 255};  // raw fp8 bytes
  }
  return {0, 0};
}

// Bits one code occupies in packed storage: sub-byte codes are padded to 2 or 4 bits so a byte
// holds a whole number of them (int3 is stored like int4, int5..int7 take a byte).
constexpr int storage_bits(int bits) {
  return bits <= 2 ? 2 : bits <= 4 ? 4 : 8;
}

}  // namespace qat::scheme
