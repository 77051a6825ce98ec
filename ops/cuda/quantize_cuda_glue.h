// at::Tensor side of the CUDA launchers: device guard, stream, raw pointers. Built only with CUDA.
#pragma once

#include <ATen/core/Tensor.h>

#include "qat/scheme/quant_spec.h"

namespace qat::ops::cuda_glue {

using scheme::GroupLayout;
using scheme::QuantSpec;

void group_stats(const at::Tensor& x, const GroupLayout& l, at::Tensor& stats);
void scales_from_stats(const at::Tensor& stats, const QuantSpec& spec, at::Tensor& scale,
                       at::Tensor& zero);
void fake_quantize(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
                   const at::Tensor& scale, const at::Tensor& zero, at::Tensor& y,
                   at::Tensor* mask);
void quantize(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
              const at::Tensor& scale, const at::Tensor& zero, at::Tensor& codes);
void dequantize(const at::Tensor& codes, const QuantSpec& spec, const GroupLayout& l,
                const at::Tensor& scale, const at::Tensor& zero, at::Tensor& y);
bool fused_dynamic_supported(const at::Tensor& x, const GroupLayout& l);
void fake_quantize_dynamic(const at::Tensor& x, const QuantSpec& spec, const GroupLayout& l,
                           at::Tensor& y, at::Tensor* mask, at::Tensor& scale, at::Tensor& zero);

// k-quant super-blocks (ops/kquant.h); tensors contiguous, sizes checked by the front-end.
void kquant_quantize(const at::Tensor& x, scheme::Format f, at::Tensor& blocks);
void kquant_dequantize(const at::Tensor& blocks, scheme::Format f, at::Tensor& y);
void kquant_fake_quantize(const at::Tensor& x, scheme::Format f, at::Tensor& y);

}  // namespace qat::ops::cuda_glue
