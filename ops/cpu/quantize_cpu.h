// CPU reference kernels: loops over ops/quant_math.h, written so that the compiler vectorizes
// them (quantize_cpu.cpp says how). These are the oracle the CUDA kernels are tested against, and
// they are themselves tested against float64 math and ggml. Tensors arrive validated, contiguous
// and allocated.
#pragma once

#include <ATen/core/Tensor.h>

#include "qat/scheme/quant_spec.h"

namespace qat::ops::cpu {

using scheme::GroupLayout;
using scheme::QuantSpec;

void group_stats(const at::Tensor& x, const GroupLayout& l, at::Tensor& stats);
void scales_from_stats(const at::Tensor& stats, const QuantSpec& spec, at::Tensor& scale,
                       at::Tensor& zero);
void scales_from_range(const at::Tensor& lo, const at::Tensor& hi, const QuantSpec& spec,
                       at::Tensor& scale, at::Tensor& zero);
void fake_quantize(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
                   const at::Tensor& scale, const at::Tensor& zero, at::Tensor& y,
                   at::Tensor* mask);
void quantize(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
              const at::Tensor& scale, const at::Tensor& zero, at::Tensor& codes);
void dequantize(const at::Tensor& codes, const QuantSpec& spec, const GroupLayout& l,
                const at::Tensor& scale, const at::Tensor& zero, at::Tensor& y);

}  // namespace qat::ops::cpu
