// Helpers every CUDA kernel file shares: launch checking, float <-> storage dtype conversion and
// dtype dispatch. Device code only (include from .cu files).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "ops/cuda/quantize_cuda.cuh"  // DType

namespace qat::ops::cuda {

inline void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) +
                             ": CUDA launch failed: " + cudaGetErrorString(err));
  }
}

__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Calls fn(T{}) with T the element type of `dt`.
template <typename Fn>
void dispatch_dtype(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::kFloat32:
      fn(float{});
      return;
    case DType::kFloat16:
      fn(__half{});
      return;
    case DType::kBFloat16:
      fn(__nv_bfloat16{});
      return;
  }
}

inline int grid_for(int64_t items, int64_t per_cta) {
  const int64_t g = (items + per_cta - 1) / per_cta;
  return static_cast<int>(g < (1 << 30) ? g : (1 << 30));
}

}  // namespace qat::ops::cuda
