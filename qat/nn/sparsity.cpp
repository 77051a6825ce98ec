#include "qat/nn/sparsity.h"

#include <ATen/ATen.h>

namespace qat::nn {

at::Tensor mask_2_4(const at::Tensor& w) {
  TORCH_CHECK(w.dim() >= 1 && w.size(-1) % 4 == 0,
              "2:4 sparsity needs the last dimension to be a multiple of 4, got shape ", w.sizes());
  const at::Tensor a = w.detach().abs().to(at::kFloat).reshape({-1, 4});
  // Stable descending sort: equal magnitudes keep index order, so the lower index wins ties.
  const at::Tensor order = std::get<1>(a.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  at::Tensor mask = at::zeros(a.sizes(), a.options().dtype(at::kBool));
  mask.scatter_(1, order.slice(1, 0, 2), true);
  return mask.view(w.sizes());
}

}  // namespace qat::nn
