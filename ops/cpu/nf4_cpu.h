// CPU reference of NF4 and the dynamic 8-bit map: loops over ops/nf4_math.h, in parallel over
// blocks (dequantize through a per-block table of the 16 decoded values). Tensors are contiguous,
// allocated and validated by the front-end (ops/nf4.cpp).
#pragma once

#include <ATen/core/Tensor.h>

namespace qat::ops::cpu {

// x: float32/float16/bfloat16; codes: uint8 [(n+1)/2]; absmax: float32 [blocks].
void nf4_quantize(const at::Tensor& x, int64_t blocksize, at::Tensor& codes, at::Tensor& absmax);
// y: float32/float16/bfloat16 with n elements.
void nf4_dequantize(const at::Tensor& codes, const at::Tensor& absmax, int64_t blocksize,
                    at::Tensor& y);
// v: float32; codes: uint8 [n]; absmax: float32 [blocks].
void dynamic_quantize(const at::Tensor& v, int64_t blocksize, at::Tensor& codes,
                      at::Tensor& absmax);
// y: float32 [n].
void dynamic_dequantize(const at::Tensor& codes, const at::Tensor& absmax, int64_t blocksize,
                        at::Tensor& y);

}  // namespace qat::ops::cpu
