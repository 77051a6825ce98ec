#include "qat/io/gguf_kquants.h"

#include <cstring>

namespace qat::io {

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits = 0;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // +-0
  } else {
    // Subnormal: value = mant * 2^-24; normalise the mantissa into a float exponent.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Q4_K packs 8 six-bit scales and 8 six-bit mins into 12 bytes: entries 0..3 sit in the low 6
// bits of bytes 0..3 (scales) and 4..7 (mins); entries 4..7 take their low 4 bits from bytes
// 8..11 (scale: low nibble, min: high nibble) and their top 2 bits from the spare high bits of
// bytes 0..3 (scales) and 4..7 (mins).
void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace

// Q4_K super-block: 8 sub-blocks of 32. Sub-blocks 2c and 2c+1 share qs[32c .. 32c+32): the
// first takes the low nibbles, the second the high ones. y = (d * sc) * q - (dmin * m).
void dequantize_q4_k(const uint8_t* blocks, int64_t n_blocks, float* out) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = blocks + b * kQ4KBlockBytes;
    const float d = fp16_to_fp32(load_u16(blk));
    const float dmin = fp16_to_fp32(load_u16(blk + 2));
    const uint8_t* scales = blk + 4;
    const uint8_t* qs = blk + 16;
    float* y = out + b * kQkK;
    for (int c = 0; c < 4; ++c) {
      for (int half = 0; half < 2; ++half) {
        uint8_t sc = 0, m = 0;
        scale_min_k4(2 * c + half, scales, &sc, &m);
        const float d1 = d * static_cast<float>(sc);
        const float m1 = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) {
          const int q = (qs[32 * c + l] >> (4 * half)) & 0x0f;
          const float dq = d1 * static_cast<float>(q);
          y[64 * c + 32 * half + l] = dq - m1;
        }
      }
    }
  }
}

// Q6_K super-block: two halves of 128 values. In half h, element 32*s + l (s = 0..3, l = 0..31)
// takes its low 4 bits from ql[64h + l + 32*(s&1)] (low nibble for s < 2, high for s >= 2) and
// its high 2 bits from qh[32h + l] >> 2s; q = that 6-bit value - 32. Sub-blocks of 16 share an
// int8 scale: y = (d * scale) * q.
void dequantize_q6_k(const uint8_t* blocks, int64_t n_blocks, float* out) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = blocks + b * kQ6KBlockBytes;
    const uint8_t* ql = blk;
    const uint8_t* qh = blk + 128;
    const int8_t* scales = reinterpret_cast<const int8_t*>(blk + 192);
    const float d = fp16_to_fp32(load_u16(blk + 208));
    float* y = out + b * kQkK;
    for (int h = 0; h < 2; ++h) {
      for (int s = 0; s < 4; ++s) {
        for (int l = 0; l < 32; ++l) {
          const int lo = (ql[64 * h + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 0x0f;
          const int hi = (qh[32 * h + l] >> (2 * s)) & 0x03;
          const int q = (lo | (hi << 4)) - 32;
          const int e = 128 * h + 32 * s + l;
          const float ds = d * static_cast<float>(scales[e / 16]);
          y[e] = ds * static_cast<float>(q);
        }
      }
    }
  }
}

}  // namespace qat::io
