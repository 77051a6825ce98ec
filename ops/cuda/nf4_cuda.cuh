// CUDA launchers for NF4 and the dynamic 8-bit map (raw pointers and a stream; the at::Tensor side
// is nf4_cuda_glue.cpp). Per-element math: ops/nf4_math.h, shared with the CPU reference.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops/cuda/quantize_cuda.cuh"  // DType

namespace qat::ops::cuda {

// x: n elements of dt; codes: (n+1)/2 bytes; absmax: ceil(n / blocksize) floats.
void launch_nf4_quantize(const void* x, DType dt, int64_t n, int64_t blocksize, uint8_t* codes,
                         float* absmax, cudaStream_t stream);
// y: n elements of dt.
void launch_nf4_dequantize(const uint8_t* codes, const float* absmax, int64_t n, int64_t blocksize,
                           DType dt, void* y, cudaStream_t stream);
// v: n floats; codes: n bytes; absmax: ceil(n / blocksize) floats.
void launch_dynamic_quantize(const float* v, int64_t n, int64_t blocksize, uint8_t* codes,
                             float* absmax, cudaStream_t stream);
void launch_dynamic_dequantize(const uint8_t* codes, const float* absmax, int64_t n,
                               int64_t blocksize, float* y, cudaStream_t stream);

}  // namespace qat::ops::cuda
