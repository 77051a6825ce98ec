// What every at::Tensor-side CUDA glue file needs: the launchers' dtype tag of a tensor and the
// current stream. Built only with CUDA.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include "ops/cuda/quantize_cuda.cuh"  // DType

namespace qat::ops::cuda_glue {

inline cuda::DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return cuda::DType::kFloat32;
    case at::kHalf:
      return cuda::DType::kFloat16;
    case at::kBFloat16:
      return cuda::DType::kBFloat16;
    default:
      TORCH_CHECK(false, "CUDA quant kernels: unsupported dtype ", t.scalar_type());
  }
}

inline cudaStream_t stream() {
  return at::cuda::getCurrentCUDAStream();
}

}  // namespace qat::ops::cuda_glue
