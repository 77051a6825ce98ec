// CUDA kernels for NF4 and the dynamic 8-bit map. Codes and values equal the CPU reference bit for
// bit: the per-element math is ops/nf4_math.h, and a block's absmax is a max (exact in any order).
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/nf4_cuda.cuh"
#include "ops/nf4_math.h"

namespace qat::ops::cuda {

namespace {

namespace nm = qat::ops::nf4_math;

__device__ __forceinline__ float load(const float* p, int64_t i) {
  return p[i];
}
__device__ __forceinline__ float load(const __half* p, int64_t i) {
  return __half2float(p[i]);
}
__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ void store(float* p, int64_t i, float v) {
  p[i] = v;
}
__device__ __forceinline__ void store(__half* p, int64_t i, float v) {
  p[i] = __float2half_rn(v);
}
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}

constexpr int kThreads = 256;  // 8 warps per CTA
// One warp per block of elements: blocksize >= 32, so every lane has work.
constexpr int kWarpsPerCta = kThreads / 32;

// absmax[b] = max |x| over block b: one warp per block, strided loads, butterfly max.
template <typename T>
__global__ void block_absmax_kernel(const T* __restrict__ x, int64_t n, int64_t blocksize,
                                    int64_t blocks, float* __restrict__ absmax) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (b >= blocks) return;  // whole warps leave together
  const int64_t begin = b * blocksize;
  const int64_t end = begin + blocksize < n ? begin + blocksize : n;
  float a = 0.0f;
  for (int64_t i = begin + lane; i < end; i += 32) a = fmaxf(a, fabsf(load(x, i)));
  for (int off = 16; off > 0; off >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, off));
  if (lane == 0) absmax[b] = a;
}

// One thread per output byte (two elements of the same block: blocksize is even).
template <typename T>
__global__ void nf4_encode_kernel(const T* __restrict__ x, int64_t n, int64_t blocksize,
                                  float* __restrict__ absmax, uint8_t* __restrict__ codes) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= (n + 1) / 2) return;
  const int64_t i = 2 * j;
  const int64_t b = i / blocksize;
  const bool partial = (b + 1) * blocksize > n;
  const float a = absmax[b];
  const nm::Nf4Block blk = nm::nf4_block(a, partial);
  const int hi = nm::nf4_encode(load(x, i), blk);
  const int lo = i + 1 < n ? nm::nf4_encode(load(x, i + 1), blk) : nm::nf4_code_cpu(0.0f);
  codes[j] = static_cast<uint8_t>(hi << 4 | lo);
}

// The stored absmax: the partial last block keeps max(absmax, 1e-38), after every code is written.
__global__ void nf4_store_absmax_kernel(int64_t n, int64_t blocksize, float* absmax) {
  const int64_t b = (n - 1) / blocksize;
  if ((b + 1) * blocksize > n) absmax[b] = nm::nf4_stored_absmax(absmax[b], true);
}

template <typename T>
__global__ void nf4_decode_kernel(const uint8_t* __restrict__ codes,
                                  const float* __restrict__ absmax, int64_t n, int64_t blocksize,
                                  T* __restrict__ y) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= (n + 1) / 2) return;
  const int64_t i = 2 * j;
  const uint8_t c = codes[j];
  const float a = absmax[i / blocksize];  // i and i+1 share the block (blocksize is even)
  store(y, i, nm::nf4_decode(c >> 4, a));
  if (i + 1 < n) store(y, i + 1, nm::nf4_decode(c & 0x0f, a));
}

__global__ void dynamic_encode_kernel(const float* __restrict__ v, int64_t n, int64_t blocksize,
                                      const float* __restrict__ absmax,
                                      uint8_t* __restrict__ codes) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) codes[i] = static_cast<uint8_t>(nm::dynamic_encode(v[i], absmax[i / blocksize]));
}

__global__ void dynamic_decode_kernel(const uint8_t* __restrict__ codes,
                                      const float* __restrict__ absmax, int64_t n,
                                      int64_t blocksize, float* __restrict__ y) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = nm::dynamic_decode(codes[i], absmax[i / blocksize]);
}

}  // namespace

void launch_nf4_quantize(const void* x, DType dt, int64_t n, int64_t blocksize, uint8_t* codes,
                         float* absmax, cudaStream_t stream) {
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  dispatch_dtype(dt, [&](auto t) {
    using T = decltype(t);
    const T* xp = static_cast<const T*>(x);
    block_absmax_kernel<T>
        <<<grid_for(blocks, kWarpsPerCta), kThreads, 0, stream>>>(xp, n, blocksize, blocks, absmax);
    check_launch("nf4 block absmax");
    nf4_encode_kernel<T>
        <<<grid_for((n + 1) / 2, kThreads), kThreads, 0, stream>>>(xp, n, blocksize, absmax, codes);
    check_launch("nf4 encode");
  });
  nf4_store_absmax_kernel<<<1, 1, 0, stream>>>(n, blocksize, absmax);
  check_launch("nf4 store absmax");
}

void launch_nf4_dequantize(const uint8_t* codes, const float* absmax, int64_t n, int64_t blocksize,
                           DType dt, void* y, cudaStream_t stream) {
  dispatch_dtype(dt, [&](auto t) {
    using T = decltype(t);
    nf4_decode_kernel<T><<<grid_for((n + 1) / 2, kThreads), kThreads, 0, stream>>>(
        codes, absmax, n, blocksize, static_cast<T*>(y));
    check_launch("nf4 decode");
  });
}

void launch_dynamic_quantize(const float* v, int64_t n, int64_t blocksize, uint8_t* codes,
                             float* absmax, cudaStream_t stream) {
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  block_absmax_kernel<float>
      <<<grid_for(blocks, kWarpsPerCta), kThreads, 0, stream>>>(v, n, blocksize, blocks, absmax);
  check_launch("dynamic block absmax");
  dynamic_encode_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(v, n, blocksize, absmax,
                                                                        codes);
  check_launch("dynamic encode");
}

void launch_dynamic_dequantize(const uint8_t* codes, const float* absmax, int64_t n,
                               int64_t blocksize, float* y, cudaStream_t stream) {
  dynamic_decode_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(codes, absmax, n, blocksize,
                                                                        y);
  check_launch("dynamic decode");
}

}  // namespace qat::ops::cuda
