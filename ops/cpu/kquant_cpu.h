// CPU reference of the k-quant super-block ops (ops/kquant.h): one super-block per iteration,
// in parallel over super-blocks; within a block the sub-block fits run 8 at a time in lockstep
// (ops/kquant_math.h). Tensors arrive contiguous and validated.
#pragma once

#include <ATen/core/Tensor.h>

#include "qat/scheme/format.h"

namespace qat::ops::cpu {

void kquant_quantize(const at::Tensor& x, scheme::Format f, at::Tensor& blocks);
void kquant_dequantize(const at::Tensor& blocks, scheme::Format f, at::Tensor& y);
void kquant_fake_quantize(const at::Tensor& x, scheme::Format f, at::Tensor& y);
// Given parameters (ops::KQuantParams, flattened float32): blocks from x, parameters from blocks.
void kquant_quantize_with(const at::Tensor& x, const at::Tensor& d, const at::Tensor& dmin,
                          const at::Tensor& scales, const at::Tensor& mins, scheme::Format f,
                          at::Tensor& blocks);
void kquant_read_params(const at::Tensor& blocks, scheme::Format f, at::Tensor& d, at::Tensor& dmin,
                        at::Tensor& scales, at::Tensor& mins);

}  // namespace qat::ops::cpu
