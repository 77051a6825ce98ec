#include "ops/cpu/nf4_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "ops/nf4_math.h"

namespace qat::ops::cpu {

namespace {

namespace m = qat::ops::math;
namespace nm = qat::ops::nf4_math;

// max |x| over [begin, end); NaN never wins a '>' comparison.
float block_absmax(const float* x, int64_t begin, int64_t end) {
  float a = 0.0f;
  for (int64_t i = begin; i < end; ++i) a = std::fabs(x[i]) > a ? std::fabs(x[i]) : a;
  return a;
}

}  // namespace

void nf4_quantize(const at::Tensor& x_in, int64_t blocksize, at::Tensor& codes,
                  at::Tensor& absmax) {
  const at::Tensor x32 = x_in.to(at::kFloat).contiguous();  // exact for float16/bfloat16
  const float* x = x32.data_ptr<float>();
  const int64_t n = x32.numel();
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  float* am = absmax.data_ptr<float>();
  uint8_t* out = codes.data_ptr<uint8_t>();
  std::fill(out, out + (n + 1) / 2, uint8_t{0});
  // Blocks in parallel: a block starts on an even element (block sizes are even), so no two
  // blocks share a byte.
  at::parallel_for(0, blocks, std::max<int64_t>(1, (int64_t{1} << 14) / blocksize),
                   [&](int64_t b0, int64_t b1) {
                     for (int64_t b = b0; b < b1; ++b) {
                       const int64_t begin = b * blocksize, end = std::min(begin + blocksize, n);
                       const bool partial = end - begin < blocksize;
                       const float a = block_absmax(x, begin, end);
                       am[b] = nm::nf4_stored_absmax(a, partial);
                       const nm::Nf4Block blk = nm::nf4_block(a, partial);
                       for (int64_t i = begin; i < end; ++i) {
                         // byte i/2: the even element in the high nibble
                         const int c = nm::nf4_encode(x[i], blk);
                         out[i / 2] = static_cast<uint8_t>(out[i / 2] | (i % 2 == 0 ? c << 4 : c));
                       }
                     }
                   });
  // An odd tensor's padding element is y = 0.0: code 7 in the low nibble of the last byte.
  if (n % 2 == 1) out[n / 2] = static_cast<uint8_t>(out[n / 2] | nm::nf4_code_cpu(0.0f));
}

// Per block, the 16 decoded values nf4_decode(c, absmax) are computed once, already in the output
// dtype's bits, and each code byte becomes two table lookups; blocks run in parallel. A block
// starts on an even element (block sizes are even), so its first element is a high nibble.
#if defined(__x86_64__) && defined(__GNUC__)
// float32 output, 16 values per step with AVX2 (the build's baseline ISA is SSE2, so this is
// compiled for AVX2 alone and chosen at run time): the byte's high and low nibbles are
// interleaved into 16 indices, and each half-vector of 8 indices picks from the block's table
// with two in-register permutes (entries 0-7 and 8-15) blended on the index's bit 3. The values
// are the table's, so the result is the scalar loop's bit for bit. Returns the pairs done.
__attribute__((target("avx2"))) int64_t nf4_table_avx2(const uint8_t* bytes, int64_t pairs,
                                                       const float* table, float* y) {
  const __m256 lo_table = _mm256_loadu_ps(table), hi_table = _mm256_loadu_ps(table + 8);
  const __m128i nibble = _mm_set1_epi8(0x0f);
  int64_t k = 0;
  for (; k + 8 <= pairs; k += 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes + k));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), nibble);
    const __m128i lo = _mm_and_si128(b, nibble);
    const __m128i idx = _mm_unpacklo_epi8(hi, lo);  // h0 l0 h1 l1 ... h7 l7
    for (int half = 0; half < 2; ++half) {
      const __m256i i = _mm256_cvtepu8_epi32(half == 0 ? idx : _mm_srli_si128(idx, 8));
      const __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_table, i),
                                        _mm256_permutevar8x32_ps(hi_table, i),
                                        _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
      _mm256_storeu_ps(y + 2 * k + 8 * half, v);
    }
  }
  return k;
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

// The code bytes of pairs [k, pairs) as table lookups; float32 output takes the AVX2 path first
// where the CPU has it.
template <typename Out>
void nf4_table_lookup(const uint8_t* bytes, int64_t pairs, const Out* table, Out* y) {
  int64_t k = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  if constexpr (std::is_same_v<Out, float>) {
    if (cpu_has_avx2()) k = nf4_table_avx2(bytes, pairs, table, y);
  }
#endif
  for (; k < pairs; ++k) {
    y[2 * k] = table[bytes[k] >> 4];
    y[2 * k + 1] = table[bytes[k] & 0x0f];
  }
}

template <typename Out, typename Convert>
void nf4_dequantize_into(const uint8_t* in, const float* am, int64_t n, int64_t blocksize, Out* out,
                         Convert convert) {
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / blocksize);
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      Out table[16];
      for (int c = 0; c < 16; ++c) table[c] = convert(nm::nf4_decode(c, am[b]));
      const int64_t begin = b * blocksize, end = std::min(begin + blocksize, n);
      const uint8_t* bytes = in + begin / 2;
      Out* y = out + begin;
      const int64_t pairs = (end - begin) / 2;
      nf4_table_lookup(bytes, pairs, table, y);
      if ((end - begin) % 2)
        y[2 * pairs] = table[bytes[pairs] >> 4];  // an odd tensor's last element
    }
  });
}

void nf4_dequantize(const at::Tensor& codes, const at::Tensor& absmax, int64_t blocksize,
                    at::Tensor& y) {
  const uint8_t* in = codes.data_ptr<uint8_t>();
  const float* am = absmax.data_ptr<float>();
  const int64_t n = y.numel();
  switch (y.scalar_type()) {
    case at::kFloat:
      nf4_dequantize_into(in, am, n, blocksize, y.data_ptr<float>(), [](float v) { return v; });
      return;
    case at::kBFloat16:
      nf4_dequantize_into(in, am, n, blocksize, reinterpret_cast<uint16_t*>(y.data_ptr()),
                          [](float v) { return m::float_to_bf16_bits(v); });
      return;
    case at::kHalf:
      nf4_dequantize_into(in, am, n, blocksize, reinterpret_cast<uint16_t*>(y.data_ptr()),
                          [](float v) { return m::float_to_half_bits(v); });
      return;
    default:
      TORCH_INTERNAL_ASSERT(false, "nf4 cpu: unexpected output dtype");
  }
}

void dynamic_quantize(const at::Tensor& v_in, int64_t blocksize, at::Tensor& codes,
                      at::Tensor& absmax) {
  const float* v = v_in.data_ptr<float>();
  const int64_t n = v_in.numel();
  float* am = absmax.data_ptr<float>();
  uint8_t* out = codes.data_ptr<uint8_t>();
  for (int64_t b = 0; b * blocksize < n; ++b) {
    const int64_t begin = b * blocksize, end = std::min(begin + blocksize, n);
    am[b] = block_absmax(v, begin, end);
    for (int64_t i = begin; i < end; ++i)
      out[i] = static_cast<uint8_t>(nm::dynamic_encode(v[i], am[b]));
  }
}

void dynamic_dequantize(const at::Tensor& codes, const at::Tensor& absmax, int64_t blocksize,
                        at::Tensor& y) {
  const uint8_t* in = codes.data_ptr<uint8_t>();
  const float* am = absmax.data_ptr<float>();
  float* out = y.data_ptr<float>();
  const int64_t n = y.numel();
  at::parallel_for(0, (n + blocksize - 1) / blocksize, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t end = std::min((b + 1) * blocksize, n);
      for (int64_t i = b * blocksize; i < end; ++i) out[i] = nm::dynamic_decode(in[i], am[b]);
    }
  });
}

}  // namespace qat::ops::cpu
