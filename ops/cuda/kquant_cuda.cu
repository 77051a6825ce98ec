// CUDA kernels for ggml's k-quants: one thread per 256-element super-block, running the same
// scalar code as the CPU reference (ops/kquant_math.h), so blocks and values match it bit for
// bit. The scale search is sequential within a super-block; a 4096 x 14336 weight has 229k
// super-blocks, enough threads to fill the GPU. Weights are quantized once per step, so this
// simple mapping is not the bottleneck of a training step.
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/kquant_cuda.cuh"
#include "ops/kquant_math.h"

namespace qat::ops::cuda {

namespace {

namespace k = qat::ops::kquant;
using scheme::Format;

constexpr int kThreads = 64;

template <typename T>
__global__ void kquant_quantize_kernel(const T* __restrict__ x, Format f, int64_t n_blocks,
                                       uint8_t* __restrict__ blocks) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= n_blocks) return;
  float buf[k::kSuperBlock];
  for (int i = 0; i < k::kSuperBlock; ++i) buf[i] = to_float(x[b * k::kSuperBlock + i]);
  k::quantize_block(f, buf, blocks + b * k::block_bytes(f));
}

template <typename T>
__global__ void kquant_dequantize_kernel(const uint8_t* __restrict__ blocks, Format f,
                                         int64_t n_blocks, T* __restrict__ y) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= n_blocks) return;
  float buf[k::kSuperBlock];
  k::dequantize_block(f, blocks + b * k::block_bytes(f), buf);
  for (int i = 0; i < k::kSuperBlock; ++i) y[b * k::kSuperBlock + i] = from_float<T>(buf[i]);
}

template <typename T>
__global__ void kquant_fake_quantize_kernel(const T* __restrict__ x, Format f, int64_t n_blocks,
                                            T* __restrict__ y) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= n_blocks) return;
  float buf[k::kSuperBlock];
  for (int i = 0; i < k::kSuperBlock; ++i) buf[i] = to_float(x[b * k::kSuperBlock + i]);
  k::fake_quant_block(f, buf);
  for (int i = 0; i < k::kSuperBlock; ++i) y[b * k::kSuperBlock + i] = from_float<T>(buf[i]);
}

}  // namespace

void launch_kquant_quantize(const void* x, DType dt, Format f, int64_t n_blocks, uint8_t* blocks,
                            cudaStream_t stream) {
  if (n_blocks == 0) return;
  dispatch_dtype(dt, [&](auto t) {
    using T = decltype(t);
    kquant_quantize_kernel<T><<<grid_for(n_blocks, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(x), f, n_blocks, blocks);
  });
  check_launch("kquant_quantize");
}

void launch_kquant_dequantize(const uint8_t* blocks, Format f, int64_t n_blocks, DType dt, void* y,
                              cudaStream_t stream) {
  if (n_blocks == 0) return;
  dispatch_dtype(dt, [&](auto t) {
    using T = decltype(t);
    kquant_dequantize_kernel<T><<<grid_for(n_blocks, kThreads), kThreads, 0, stream>>>(
        blocks, f, n_blocks, static_cast<T*>(y));
  });
  check_launch("kquant_dequantize");
}

void launch_kquant_fake_quantize(const void* x, DType dt, Format f, int64_t n_blocks, void* y,
                                 cudaStream_t stream) {
  if (n_blocks == 0) return;
  dispatch_dtype(dt, [&](auto t) {
    using T = decltype(t);
    kquant_fake_quantize_kernel<T><<<grid_for(n_blocks, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(x), f, n_blocks, static_cast<T*>(y));
  });
  check_launch("kquant_fake_quantize");
}

}  // namespace qat::ops::cuda
