#include "qat/nf4/nf4_linear.h"

#include <torch/autograd.h>

namespace qat::nf4 {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// y = x W^T with W = dequantize(NF4) and no gradient for W. Autograd saves the NF4 pieces, not W:
//   forward:  y  = x  W^T     (W dequantized to x's dtype, freed on return)
//   backward: dX = dY W       (W dequantized again to dY's dtype)
struct NF4MatmulFunction : public torch::autograd::Function<NF4MatmulFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const NF4Tensor& w) {
    ctx->saved_data["codes"] = w.codes();
    ctx->saved_data["absmax"] = w.absmax();
    ctx->saved_data["nested_absmax"] = w.nested_absmax();
    ctx->saved_data["offset"] = w.offset();
    ctx->saved_data["shape"] = w.shape();
    ctx->saved_data["dtype"] = static_cast<int64_t>(w.dtype());
    ctx->saved_data["blocksize"] = w.config().blocksize;
    ctx->saved_data["double_quant"] = w.config().double_quant;
    ctx->saved_data["nested_blocksize"] = w.config().nested_blocksize;
    return at::linear(x, w.dequantize(x.scalar_type()));
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto& s = ctx->saved_data;
    const NF4Config cfg{s["blocksize"].toInt(), s["double_quant"].toBool(),
                        s["nested_blocksize"].toInt()};
    auto opt = [](const at::IValue& v) { return v.isTensor() ? v.toTensor() : at::Tensor(); };
    const NF4Tensor w = NF4Tensor::from_parts(
        s["codes"].toTensor(), s["absmax"].toTensor(), opt(s["nested_absmax"]), opt(s["offset"]),
        s["shape"].toIntVector(), static_cast<at::ScalarType>(s["dtype"].toInt()), cfg);
    const at::Tensor& dy = grads[0];
    return {at::matmul(dy, w.dequantize(dy.scalar_type())), at::Tensor()};
  }
};

}  // namespace

NF4Linear::NF4Linear(NF4Tensor weight, at::Tensor bias)
    : LinearBase(weight.defined() && weight.shape().size() == 2 ? weight.shape()[1] : 0,
                 weight.defined() && weight.shape().size() == 2 ? weight.shape()[0] : 0),
      weight_(std::move(weight)) {
  TORCH_CHECK(weight_.defined() && weight_.shape().size() == 2,
              "NF4Linear: the weight must be a 2-d NF4Tensor [out_features, in_features]");
  // Registered as buffers (same tensors), so Module::to() and state dicts see them.
  register_buffer("weight_codes", weight_.codes());
  register_buffer("weight_absmax", weight_.absmax());
  if (weight_.double_quant()) {
    register_buffer("weight_nested_absmax", weight_.nested_absmax());
    register_buffer("weight_offset", weight_.offset());
  }
  if (bias.defined()) {
    TORCH_CHECK(bias.dim() == 1 && bias.size(0) == out_features_,
                "NF4Linear: bias must have shape [", out_features_, "], got ", bias.sizes());
    bias_ = register_buffer("bias", bias.detach().clone());
  }
}

std::shared_ptr<NF4Linear> NF4Linear::from_linear(const qat::nn::LinearBase& source,
                                                  const NF4Config& config) {
  const at::Tensor w = source.effective_weight().detach();
  return std::make_shared<NF4Linear>(NF4Tensor::quantize(w, config), source.bias());
}

at::Tensor NF4Linear::forward(const at::Tensor& x) {
  TORCH_CHECK(x.size(-1) == in_features_, "NF4Linear: expected inputs with ", in_features_,
              " features in the last dimension, got shape ", x.sizes());
  at::Tensor y = NF4MatmulFunction::apply(x, weight_);
  if (bias_.defined()) y = y + bias_.to(y.scalar_type());
  return y;
}

int64_t NF4Linear::nbytes() const {
  return weight_.nbytes() + (bias_.defined() ? bias_.numel() * bias_.element_size() : 0);
}

}  // namespace qat::nf4
