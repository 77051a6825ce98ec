// The argument checks every ops front-end (ops/quantize.cpp, ops/kquant.cpp, ops/pack.cpp)
// starts with, and the shape helper they share.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <vector>

namespace qat::ops {

// A defined float32, float16 or bfloat16 tensor, or an error naming `what`.
inline void check_float_input(const at::Tensor& x, const char* what) {
  TORCH_CHECK(x.defined(), what, ": the input tensor is undefined");
  const auto dt = x.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, what,
              ": expected a float32, float16 or bfloat16 tensor, got ", dt);
}

// `shape` with its last dimension replaced by `last` (packed or unpacked rows).
inline std::vector<int64_t> with_last(at::IntArrayRef shape, int64_t last) {
  std::vector<int64_t> s(shape.begin(), shape.end());
  s.back() = last;
  return s;
}

}  // namespace qat::ops
