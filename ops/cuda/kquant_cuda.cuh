// CUDA launchers for the k-quant super-block ops (ops/kquant.h). Raw pointers and a stream.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops/cuda/quantize_cuda.cuh"  // DType
#include "qat/scheme/format.h"

namespace qat::ops::cuda {

// x: n_blocks * 256 elements of dtype dt; blocks: n_blocks * block_bytes(f).
void launch_kquant_quantize(const void* x, DType dt, scheme::Format f, int64_t n_blocks,
                            uint8_t* blocks, cudaStream_t stream);
void launch_kquant_dequantize(const uint8_t* blocks, scheme::Format f, int64_t n_blocks, DType dt,
                              void* y, cudaStream_t stream);
void launch_kquant_fake_quantize(const void* x, DType dt, scheme::Format f, int64_t n_blocks,
                                 void* y, cudaStream_t stream);

}  // namespace qat::ops::cuda
