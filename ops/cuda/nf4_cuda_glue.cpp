#include "ops/cuda/nf4_cuda_glue.h"

#include <c10/cuda/CUDAGuard.h>

#include "ops/cuda/glue_common.h"
#include "ops/cuda/nf4_cuda.cuh"

namespace qat::ops::cuda_glue {

void nf4_quantize(const at::Tensor& x, int64_t blocksize, at::Tensor& codes, at::Tensor& absmax) {
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::launch_nf4_quantize(x.data_ptr(), dtype_of(x), x.numel(), blocksize,
                            codes.data_ptr<uint8_t>(), absmax.data_ptr<float>(), stream());
}

void nf4_dequantize(const at::Tensor& codes, const at::Tensor& absmax, int64_t blocksize,
                    at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(codes.device());
  cuda::launch_nf4_dequantize(codes.data_ptr<uint8_t>(), absmax.data_ptr<float>(), y.numel(),
                              blocksize, dtype_of(y), y.data_ptr(), stream());
}

void dynamic_quantize(const at::Tensor& v, int64_t blocksize, at::Tensor& codes,
                      at::Tensor& absmax) {
  const c10::cuda::CUDAGuard guard(v.device());
  cuda::launch_dynamic_quantize(v.data_ptr<float>(), v.numel(), blocksize,
                                codes.data_ptr<uint8_t>(), absmax.data_ptr<float>(), stream());
}

void dynamic_dequantize(const at::Tensor& codes, const at::Tensor& absmax, int64_t blocksize,
                        at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(codes.device());
  cuda::launch_dynamic_dequantize(codes.data_ptr<uint8_t>(), absmax.data_ptr<float>(),
                                  codes.numel(), blocksize, y.data_ptr<float>(), stream());
}

}  // namespace qat::ops::cuda_glue
