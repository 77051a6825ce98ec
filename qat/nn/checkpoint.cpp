#include "qat/nn/checkpoint.h"

#include <torch/autograd.h>

#include "qat/fake_quant/recompute.h"

namespace qat::nn {
namespace {

// Holds the block function inside the autograd context (saved_data takes IValues only).
struct BlockHolder : torch::CustomClassHolder {
  explicit BlockHolder(BlockFn f) : fn(std::move(f)) {}
  BlockFn fn;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  // `params` is an at::TensorList so autograd treats each entry as a differentiable input.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            at::TensorList params, c10::IValue holder) {
    ctx->saved_data["fn"] = holder;
    std::vector<at::Tensor> saved{input};
    saved.insert(saved.end(), params.begin(), params.end());
    ctx->save_for_backward(saved);
    at::NoGradGuard no_grad;
    const auto capsule = holder.toCapsule();
    return static_cast<BlockHolder*>(capsule.get())->fn(input);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto capsule = ctx->saved_data["fn"].toCapsule();
    const auto* holder = static_cast<BlockHolder*>(capsule.get());
    const auto saved = ctx->get_saved_variables();
    std::vector<at::Tensor> inputs{saved[0].detach().requires_grad_(true)};
    inputs.insert(inputs.end(), saved.begin() + 1, saved.end());
    at::Tensor y;
    {
      at::AutoGradMode enable(true);
      fake_quant::RecomputeScope scope;
      y = holder->fn(inputs[0]);
    }
    auto result = torch::autograd::grad({y}, inputs, {grads[0]}, /*retain_graph=*/false,
                                        /*create_graph=*/false, /*allow_unused=*/true);
    result.emplace_back();  // the holder
    return result;
  }
};

}  // namespace

at::Tensor checkpoint(const BlockFn& fn, const at::Tensor& input,
                      const std::vector<at::Tensor>& params) {
  if (!at::GradMode::is_enabled()) return fn(input);
  std::vector<at::Tensor> trainable;
  for (const auto& p : params) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  if (!input.requires_grad() && trainable.empty()) return fn(input);
  auto holder = c10::IValue::make_capsule(c10::make_intrusive<BlockHolder>(fn));
  return CheckpointFunction::apply(input, at::TensorList(trainable), std::move(holder));
}

}  // namespace qat::nn
