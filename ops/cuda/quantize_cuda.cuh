// CUDA launchers for quantize / dequantize / fake quant. Raw pointers and a stream only: the
// at::Tensor side lives in quantize_cuda_glue.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "qat/scheme/format.h"

namespace qat::ops::cuda {

// Element type of the float tensors a launcher reads or writes.
enum class DType : uint8_t { kFloat32, kFloat16, kBFloat16 };

// Where each element's parameters live: group of flat element i = (i / inner) % count.
struct Layout {
  int64_t inner;
  int64_t count;
  int64_t numel;
};

struct SpecArgs {
  scheme::Format format;
  int bits;
  scheme::ScaleDtype scale_dtype;
};

// stats: [count, 4] float (min, max, max|x|, signed max|x|).
void launch_group_stats(const void* x, DType dt, Layout l, float* stats, cudaStream_t stream);
void launch_scales_from_stats(const float* stats, SpecArgs spec, int64_t count, float* scale,
                              float* zero, cudaStream_t stream);
// mask may be null.
void launch_fake_quantize(const void* x, DType dt, SpecArgs spec, Layout l, const float* scale,
                          const float* zero, void* y, bool* mask, cudaStream_t stream);
void launch_quantize(const void* x, DType dt, SpecArgs spec, Layout l, const float* scale,
                     const float* zero, uint8_t* codes, cudaStream_t stream);
void launch_dequantize(const uint8_t* codes, DType dt, SpecArgs spec, Layout l, const float* scale,
                       const float* zero, void* y, cudaStream_t stream);

// Fused dynamic fake quant for contiguous groups: every group's statistics, scale and fake-quant
// values in one pass (one sub-warp per group). True when the shape suits it: groups contiguous,
// group size / (16 bytes / element size) a power of two <= 32, pointers 16-byte aligned.
bool fused_dynamic_supported(DType dt, Layout l, const void* x, const void* y);
void launch_fake_quantize_dynamic(const void* x, DType dt, SpecArgs spec, Layout l, void* y,
                                  bool* mask, float* scale, float* zero, cudaStream_t stream);

}  // namespace qat::ops::cuda
