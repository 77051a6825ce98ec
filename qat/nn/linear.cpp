#include "qat/nn/linear.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>

namespace qat::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, torch::TensorOptions options)
    : LinearBase(in_features, out_features) {
  TORCH_CHECK(in_features > 0 && out_features > 0,
              "Linear: features must be > 0, got in=", in_features, " out=", out_features);
  weight_ = register_parameter("weight", torch::empty({out_features, in_features}, options));
  // torch.nn.Linear's init: kaiming_uniform(a=sqrt(5)) for W, U(-1/sqrt(in), 1/sqrt(in)) for b.
  torch::nn::init::kaiming_uniform_(weight_, std::sqrt(5.0));
  if (bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    bias_ = register_parameter("bias", torch::empty({out_features}, options));
    torch::nn::init::uniform_(bias_, -bound, bound);
  }
}

at::Tensor Linear::forward(const at::Tensor& x) {
  return at::linear(x, weight_, bias_);
}

void ModuleWithLinears::register_linear(const std::string& name,
                                        std::shared_ptr<LinearBase>& slot) {
  TORCH_CHECK(slot, "register_linear: slot '", name, "' is empty");
  register_module(name, slot);
  slots_[name] = &slot;
}

void ModuleWithLinears::replace_linear(const std::string& name, std::shared_ptr<LinearBase> layer) {
  auto it = slots_.find(name);
  TORCH_CHECK(it != slots_.end(), "replace_linear: no linear named '", name, "' in this module");
  TORCH_CHECK(layer, "replace_linear: the new layer for '", name, "' is null");
  replace_module(name, layer);
  *it->second = std::move(layer);
}

std::map<std::string, std::shared_ptr<LinearBase>> ModuleWithLinears::linears() const {
  std::map<std::string, std::shared_ptr<LinearBase>> out;
  for (const auto& [name, slot] : slots_) out[name] = *slot;
  return out;
}

}  // namespace qat::nn
