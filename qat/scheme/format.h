// The quantization formats: one enum and one traits table (as ggml's type_traits[]).
//
// A format's row below is everything the format *is*: the bits a user may ask for, how a group's
// range becomes its scale, its block size and bytes, its scale storage, its code range, and for
// the ggml block formats the GGUF facts (ggml type id and name, llama.cpp file type, the format
// llama.cpp writes when a row is not whole super-blocks). Everything that quantizes -- fake quant,
// convert, export, import -- reads the row; the other tables are derived from it (the GGUF type
// table in qat/io/gguf.cpp, qat/io/gguf_blocks.h's block types, export's file type), and
// static_asserts tie the rest to it (the packed block structs of qat/scheme/blocks.h, the row
// order). tests/qat/scheme/test_format_table.cpp checks the row against ggml's own numbers.
//
// Adding a format:
//   1. one enum value below and one row in kFormatTraits (a GGUF block format: its ggml type id,
//      name and llama_ftype from ggml.h / llama.h);
//   2. a GGUF block format: its packed struct in qat/scheme/blocks.h (block_struct_bytes must list
//      it, or the static_assert there fails);
//   3. its math: scalar quantize/dequantize in ops/quant_math.h (k-quants: a super-block in
//      ops/kquant_math.h), and its case in every switch over Format (no switch has a default:
//      -Wswitch names each one that misses it);
//   4. its tests: reference bytes from the format's reference implementation (tests/ops), and
//      the table test (tests/qat/scheme/test_format_table.cpp) gets its ggml numbers.
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

// Smallest and largest code of an integer format, as stored (before any zero point).
struct CodeRange {
  int qmin;
  int qmax;
};

// What a GGUF file knows of a ggml block format. The numbers are ggml's and llama.cpp's own
// (ggml.h enum ggml_type, llama.h enum llama_ftype, src/llama-quant.cpp).
struct GgufFacts {
  int type;               // ggml_type id, the GGUF tensor type (GGML_TYPE_Q4_0 = 2); -1: none
  std::string_view name;  // ggml's name of that type ("Q4_0"), as GGUF tools print it
  int llama_ftype;        // LLAMA_FTYPE_MOSTLY_* written as general.file_type when most linears
                          // have this type; -1: none
  Format row_fallback;    // what llama-quantize writes instead when a row is not whole 256-element
                          // super-blocks (k-quants); the format itself when it has no fallback
};

struct FormatTraits {
  Format format;          // the row's own enum value (rows are in enum order: static_assert below)
  std::string_view name;  // as written in configs ("int", "uint", "fp8_e4m3", ...)
  int min_bits;           // inclusive range of the `bits` a user may ask for
  int max_bits;
  Mapping mapping;
  int fixed_block;         // >0: the format owns its grouping (GGUF: 32 or 256 along the last dim)
  int block_bytes;         // GGUF: bytes of one packed block (sizeof its struct in blocks.h);
                           // 0 when codes are packed bitwise
  bool fixed_scale_dtype;  // true: scale_dtype is part of the format (GGUF: fp16), not a choice
  ScaleDtype scale_dtype;  // the default (or the only) scale storage type
  bool zero_point;         // a zero point (uint) or min (Q4_1, Q5_1) is stored beside each scale
  CodeRange codes;         // code range as stored; int and uint: at max_bits (see code_range)
  bool high_nibble_first;  // sub-byte packing order: NF4 follows bitsandbytes (first = high)
  bool learnable_ok;       // LSQ/LSQ+ apply (integer grids only)
  GgufFacts gguf;          // ggml block formats; type -1 for the others
};

// The GGUF facts of a format that no ggml type stores.
constexpr GgufFacts no_gguf(Format f) {
  return {-1, "", -1, f};
}

// clang-format off
inline constexpr FormatTraits kFormatTraits[] = {
  // Line 1: format, name, bits (min, max), mapping, fixed block, block bytes.
  // Line 2: fixed scale dtype, scale dtype, zero point, codes, high nibble first, learnable,
  //         GGUF {ggml type id, ggml name, llama_ftype, row fallback}.
  {Format::kInt,     "int",       2, 8, Mapping::kSymmetric,  0,   0,
   false, ScaleDtype::kFloat32, false, {-128, 127}, false, true,  no_gguf(Format::kInt)},
  {Format::kUInt,    "uint",      2, 8, Mapping::kAsymmetric, 0,   0,
   false, ScaleDtype::kFloat32, true,  {0, 255},    false, true,  no_gguf(Format::kUInt)},
  {Format::kFp8E4M3, "fp8_e4m3",  8, 8, Mapping::kSymmetric,  0,   0,  // codes: the fp8 byte
   false, ScaleDtype::kFloat32, false, {0, 255},    false, false, no_gguf(Format::kFp8E4M3)},
  {Format::kFp8E5M2, "fp8_e5m2",  8, 8, Mapping::kSymmetric,  0,   0,  // codes: the fp8 byte
   false, ScaleDtype::kFloat32, false, {0, 255},    false, false, no_gguf(Format::kFp8E5M2)},
  {Format::kNf4,     "nf4",       4, 4, Mapping::kAbsmax,     0,   0,
   false, ScaleDtype::kFloat32, false, {0, 15},     true,  false, no_gguf(Format::kNf4)},
  {Format::kQ8_0,    "gguf_q8_0", 8, 8, Mapping::kGgufBlock,  32,  34,
   true,  ScaleDtype::kFloat16, false, {-128, 127}, false, false, {8, "Q8_0", 7, Format::kQ8_0}},
  {Format::kQ4_0,    "gguf_q4_0", 4, 4, Mapping::kGgufBlock,  32,  18,
   true,  ScaleDtype::kFloat16, false, {0, 15},     false, false, {2, "Q4_0", 2, Format::kQ4_0}},
  {Format::kQ4_1,    "gguf_q4_1", 4, 4, Mapping::kGgufBlock,  32,  20,
   true,  ScaleDtype::kFloat16, true,  {0, 15},     false, false, {3, "Q4_1", 3, Format::kQ4_1}},
  {Format::kQ5_0,    "gguf_q5_0", 5, 5, Mapping::kGgufBlock,  32,  22,
   true,  ScaleDtype::kFloat16, false, {0, 31},     false, false, {6, "Q5_0", 8, Format::kQ5_0}},
  {Format::kQ5_1,    "gguf_q5_1", 5, 5, Mapping::kGgufBlock,  32,  24,
   true,  ScaleDtype::kFloat16, true,  {0, 31},     false, false, {7, "Q5_1", 9, Format::kQ5_1}},
  {Format::kQ4_K,    "gguf_q4_k", 4, 4, Mapping::kGgufSuper,  256, 144,  // ftype MOSTLY_Q4_K_S
   true,  ScaleDtype::kFloat16, false, {0, 15},     false, false, {12, "Q4_K", 14, Format::kQ5_0}},
  {Format::kQ5_K,    "gguf_q5_k", 5, 5, Mapping::kGgufSuper,  256, 176,  // ftype MOSTLY_Q5_K_S
   true,  ScaleDtype::kFloat16, false, {0, 31},     false, false, {13, "Q5_K", 16, Format::kQ5_1}},
  {Format::kQ6_K,    "gguf_q6_k", 6, 6, Mapping::kGgufSuper,  256, 210,  // ftype MOSTLY_Q6_K
   true,  ScaleDtype::kFloat16, false, {-32, 31},   false, false, {14, "Q6_K", 18, Format::kQ8_0}},
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

// Whether a GGUF tensor type stores the format exactly (the ggml block formats).
constexpr bool has_gguf_type(Format f) {
  return traits(f).gguf.type >= 0;
}

// The stored code range of a format at `bits` (int and uint scale with bits; the other formats
// have one width).
constexpr CodeRange code_range(Format f, int bits) {
  if (f == Format::kInt) return {-(1 << (bits - 1)), (1 << (bits - 1)) - 1};
  if (f == Format::kUInt) return {0, (1 << bits) - 1};
  return traits(f).codes;
}

namespace detail {
// The facts of the rows that must agree with each other, checked at compile time.
constexpr bool rows_agree() {
  for (int i = 0; i < kNumFormats; ++i) {
    const FormatTraits& t = kFormatTraits[i];
    if (static_cast<int>(t.format) != i) return false;  // rows in enum order
    if (t.min_bits < 1 || t.min_bits > t.max_bits || t.max_bits > 8) return false;
    // max_bits codes: 2^max_bits of them (fp8: every byte; nf4: 16 table entries)
    if (t.codes.qmax - t.codes.qmin + 1 != 1 << t.max_bits) return false;
    const bool block = t.fixed_block > 0;
    const bool gguf = t.mapping == Mapping::kGgufBlock || t.mapping == Mapping::kGgufSuper;
    if (block != gguf || (t.block_bytes > 0) != block || (t.gguf.type >= 0) != block) return false;
    if (gguf && (!t.fixed_scale_dtype || t.scale_dtype != ScaleDtype::kFloat16 ||
                 t.gguf.name.empty() || t.gguf.llama_ftype < 0))
      return false;
    // Only k-quants fall back, to a format of the 32-element blocks that splits their rows.
    const FormatTraits& fb = kFormatTraits[static_cast<int>(t.gguf.row_fallback)];
    const bool falls_back = t.gguf.row_fallback != t.format;
    if (falls_back != (t.mapping == Mapping::kGgufSuper)) return false;
    if (falls_back && (fb.mapping != Mapping::kGgufBlock || t.fixed_block % fb.fixed_block != 0))
      return false;
  }
  return true;
}
}  // namespace detail
static_assert(sizeof(kFormatTraits) / sizeof(kFormatTraits[0]) == kNumFormats,
              "one row per Format");
static_assert(detail::rows_agree(), "kFormatTraits: a row contradicts itself (see rows_agree)");

// Bits one code occupies in packed storage: sub-byte codes are padded to 2 or 4 bits so a byte
// holds a whole number of them (int3 is stored like int4, int5..int7 take a byte).
constexpr int storage_bits(int bits) {
  return bits <= 2 ? 2 : bits <= 4 ? 4 : 8;
}

}  // namespace qat::scheme
