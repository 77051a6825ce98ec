#include "ops/cuda/quantize_cuda_glue.h"

#include <c10/cuda/CUDAGuard.h>

#include "ops/cuda/glue_common.h"
#include "ops/cuda/kquant_cuda.cuh"
#include "ops/cuda/quantize_cuda.cuh"

namespace qat::ops::cuda_glue {

namespace {

cuda::Layout layout_of(const GroupLayout& l) {
  return {l.inner, l.count, l.numel};
}
cuda::SpecArgs spec_of(const QuantSpec& s) {
  return {s.format, s.bits, s.scale_dtype};
}

}  // namespace

void group_stats(const at::Tensor& x, const GroupLayout& l, at::Tensor& stats) {
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::launch_group_stats(x.data_ptr(), dtype_of(x), layout_of(l), stats.data_ptr<float>(),
                           stream());
}

void scales_from_stats(const at::Tensor& stats, const QuantSpec& spec, at::Tensor& scale,
                       at::Tensor& zero) {
  const c10::cuda::CUDAGuard guard(stats.device());
  cuda::launch_scales_from_stats(stats.data_ptr<float>(), spec_of(spec), scale.numel(),
                                 scale.data_ptr<float>(), zero.data_ptr<float>(), stream());
}

void fake_quantize(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
                   const at::Tensor& scale, const at::Tensor& zero, at::Tensor& y,
                   at::Tensor* mask) {
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::launch_fake_quantize(x.data_ptr(), dtype_of(x), spec_of(spec), layout_of(l),
                             scale.data_ptr<float>(), zero.data_ptr<float>(), y.data_ptr(),
                             mask ? mask->data_ptr<bool>() : nullptr, stream());
}

void quantize(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
              const at::Tensor& scale, const at::Tensor& zero, at::Tensor& codes) {
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::launch_quantize(x.data_ptr(), dtype_of(x), spec_of(spec), layout_of(l),
                        scale.data_ptr<float>(), zero.data_ptr<float>(), codes.data_ptr<uint8_t>(),
                        stream());
}

void dequantize(const at::Tensor& codes, const QuantSpec& spec, const GroupLayout& l,
                const at::Tensor& scale, const at::Tensor& zero, at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(codes.device());
  cuda::launch_dequantize(codes.data_ptr<uint8_t>(), dtype_of(y), spec_of(spec), layout_of(l),
                          scale.data_ptr<float>(), zero.data_ptr<float>(), y.data_ptr(), stream());
}

bool fused_dynamic_supported(const at::Tensor& x, const GroupLayout& l) {
  // y is allocated fresh (16-byte aligned), so x's pointer is the one to check.
  return cuda::fused_dynamic_supported(dtype_of(x), layout_of(l), x.data_ptr(), x.data_ptr());
}

void fake_quantize_dynamic(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
                           at::Tensor& y, at::Tensor* mask, at::Tensor& scale, at::Tensor& zero) {
  const c10::cuda::CUDAGuard guard(x.device());
  TORCH_CHECK(cuda::fused_dynamic_supported(dtype_of(x), layout_of(l), x.data_ptr(), y.data_ptr()),
              "fake_quantize_dynamic: the fused CUDA path does not support this layout");
  cuda::launch_fake_quantize_dynamic(x.data_ptr(), dtype_of(x), spec_of(spec), layout_of(l),
                                     y.data_ptr(), mask ? mask->data_ptr<bool>() : nullptr,
                                     scale.data_ptr<float>(), zero.data_ptr<float>(), stream());
}

void kquant_quantize(const at::Tensor& x, scheme::Format f, at::Tensor& blocks) {
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::launch_kquant_quantize(x.data_ptr(), dtype_of(x), f, x.numel() / 256,
                               blocks.data_ptr<uint8_t>(), stream());
}

void kquant_dequantize(const at::Tensor& blocks, scheme::Format f, at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(y.device());
  cuda::launch_kquant_dequantize(blocks.data_ptr<uint8_t>(), f, y.numel() / 256, dtype_of(y),
                                 y.data_ptr(), stream());
}

void kquant_fake_quantize(const at::Tensor& x, scheme::Format f, at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::launch_kquant_fake_quantize(x.data_ptr(), dtype_of(x), f, x.numel() / 256, y.data_ptr(),
                                    stream());
}

}  // namespace qat::ops::cuda_glue
