// NF4 with double quantization, bit-exact with bitsandbytes 0.50.2 on the CPU
// (bitsandbytes.functional.quantize_4bit(x, blocksize, quant_type="nf4", compress_statistics)
// and dequantize_4bit). Front-ends: validate, allocate, dispatch to ops/cpu/nf4_cpu (the plain
// reference) or ops/cuda/nf4_cuda (the same math per element, ops/nf4_math.h).
//
// Layout (docs/numerics.md, "NF4 and double quantization"):
//   codes:  uint8 [(n+1)/2, 1]; byte j = code[2j] << 4 | code[2j+1] over the flattened tensor,
//           an odd tensor padded with code 7 (bitsandbytes pads y with 0.0)
//   absmax: float32 [ceil(n / blocksize)]
//   double quant: offset = mean(absmax) (float32, 0-dim), absmax - offset in blocks of 256
//           with the signed 8-bit dynamic map -> uint8 codes + float32 nested absmax.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace qat::ops {

inline constexpr int64_t kNf4DefaultBlocksize = 64;
inline constexpr int64_t kNf4NestedBlocksize = 256;

struct Nf4Quantized {
  at::Tensor codes;   // uint8 [(n+1)/2, 1]
  at::Tensor absmax;  // float32 [blocks]
};

// Blocksize must be a power of two in [32, 4096]; x float32/float16/bfloat16, non-empty, finite.
Nf4Quantized nf4_quantize(const at::Tensor& x, int64_t blocksize = kNf4DefaultBlocksize);

// Values as `dtype` (float32, float16, bfloat16) shaped `shape`: y = table[code] * absmax in
// float32, then one rounding to dtype (round to nearest even).
at::Tensor nf4_dequantize(const at::Tensor& codes, const at::Tensor& absmax, at::IntArrayRef shape,
                          int64_t blocksize, at::ScalarType dtype);

// The 8-bit blockwise quantization bitsandbytes applies to the absmax (quantize_blockwise with
// its default signed dynamic map): one code per element of the float32 tensor v, one float32
// absmax per block of `blocksize` (a power of two in [32, 4096]).
struct DynamicQuantized {
  at::Tensor codes;   // uint8, v's numel
  at::Tensor absmax;  // float32 [ceil(numel / blocksize)]
};
DynamicQuantized dynamic_quantize_blockwise(const at::Tensor& v, int64_t blocksize);
// v_hat = map[code] * absmax (float32, 1-d).
at::Tensor dynamic_dequantize_blockwise(const at::Tensor& codes, const at::Tensor& absmax,
                                        int64_t blocksize);

struct Nf4DoubleQuantized {
  at::Tensor codes;          // uint8 [blocks]: absmax - offset in the dynamic map
  at::Tensor nested_absmax;  // float32 [ceil(blocks / nested_blocksize)]
  at::Tensor offset;         // float32, 0-dim: mean(absmax)
};
// offset = mean(absmax) is computed with at::mean on a CPU float32 copy, as bitsandbytes'
// torch.mean does on the CPU (a plain loop would round the sum differently); the CUDA path copies
// the absmax to the host for it so that both devices produce the same offset.
Nf4DoubleQuantized nf4_double_quantize(const at::Tensor& absmax,
                                       int64_t nested_blocksize = kNf4NestedBlocksize);
// absmax_hat = map[q] * nested_absmax[b / nested_blocksize] + offset (two roundings), float32.
at::Tensor nf4_double_dequantize(const Nf4DoubleQuantized& dq,
                                 int64_t nested_blocksize = kNf4NestedBlocksize);

// The signed dynamic map as a float32 [256] CPU tensor (the table the kernels use).
at::Tensor dynamic_map_signed();

// Throws (TORCH_CHECK) unless blocksize is a power of two in [32, 4096]; `what` names the caller.
void check_nf4_blocksize(int64_t blocksize, const char* what);

}  // namespace qat::ops
