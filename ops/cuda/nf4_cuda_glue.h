// at::Tensor side of the NF4 CUDA launchers: device guard, stream, raw pointers. Built only with
// CUDA; tensors are contiguous and validated by ops/nf4.cpp.
#pragma once

#include <ATen/core/Tensor.h>

namespace qat::ops::cuda_glue {

void nf4_quantize(const at::Tensor& x, int64_t blocksize, at::Tensor& codes, at::Tensor& absmax);
void nf4_dequantize(const at::Tensor& codes, const at::Tensor& absmax, int64_t blocksize,
                    at::Tensor& y);
void dynamic_quantize(const at::Tensor& v, int64_t blocksize, at::Tensor& codes,
                      at::Tensor& absmax);
void dynamic_dequantize(const at::Tensor& codes, const at::Tensor& absmax, int64_t blocksize,
                        at::Tensor& y);

}  // namespace qat::ops::cuda_glue
