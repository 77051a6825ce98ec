// The argument checks every ops front-end (ops/quantize.cpp, ops/kquant.cpp) starts with.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace qat::ops {

// A defined float32, float16 or bfloat16 tensor, or an error naming `what`.
inline void check_float_input(const at::Tensor& x, const char* what) {
  TORCH_CHECK(x.defined(), what, ": the input tensor is undefined");
  const auto dt = x.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, what,
              ": expected a float32, float16 or bfloat16 tensor, got ", dt);
}

}  // namespace qat::ops
