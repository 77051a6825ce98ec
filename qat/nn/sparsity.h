// 2:4 structured sparsity: in every 4 consecutive weights along the input dimension, keep the 2
// of largest magnitude (ties: the lower index). Composes with fake quant: the layer quantizes
// w * mask, and a pruned weight stays exactly zero in every format with an exact zero (all but
// gguf_q4_1, whose grid is offset by the block min).
#pragma once

#include <ATen/core/Tensor.h>

namespace qat::nn {

// Bool mask with w's shape; the last dimension must be a multiple of 4.
at::Tensor mask_2_4(const at::Tensor& w);

struct SparsityConfig {
  bool enabled = false;
  // 0: the mask is computed once (at prepare) and fixed; N > 0: recomputed every N training steps.
  int64_t recompute_every = 0;
};

}  // namespace qat::nn
