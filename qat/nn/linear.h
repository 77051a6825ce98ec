// Linear layers that prepare()/convert() can swap, and the parent-module mechanism that makes a
// swap visible to the parent's forward.
//
// libtorch's replace_module() only updates the registry, not the parent's member pointer, so a
// parent that calls `q_proj_->forward(x)` would keep using the old layer. Models in this project
// therefore hold their linears in slots (register_linear), and replace_linear() updates both.
#pragma once

#include <torch/nn/module.h>

#include <map>
#include <memory>
#include <string>

namespace qat::nn {

// Anything that computes y = x W^T + b: dense, fake-quant, quantized (and later NF4, LoRA).
class LinearBase : public torch::nn::Module {
 public:
  LinearBase(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  // The effective dense weight [out, in] the forward multiplies by (for tests and merges).
  virtual at::Tensor effective_weight() const = 0;
  virtual at::Tensor bias() const = 0;

 protected:
  int64_t in_features_, out_features_;
};

// A plain dense linear layer (torch::nn::Linear's math and initialisation).
class Linear : public LinearBase {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true,
         torch::TensorOptions options = {});
  at::Tensor forward(const at::Tensor& x) override;
  at::Tensor effective_weight() const override { return weight_; }
  at::Tensor bias() const override { return bias_; }
  const at::Tensor& weight() const { return weight_; }

 private:
  at::Tensor weight_;  // (out, in)
  at::Tensor bias_;    // (out,) or undefined
};

// Base for modules that own swappable linear layers.
class ModuleWithLinears : public torch::nn::Module {
 public:
  // Registers `slot` as child `name`; the model keeps calling through `slot`.
  void register_linear(const std::string& name, std::shared_ptr<LinearBase>& slot);
  // Replaces the linear in slot `name` (registry and member both).
  void replace_linear(const std::string& name, std::shared_ptr<LinearBase> layer);
  // name -> current layer, in registration order of names.
  std::map<std::string, std::shared_ptr<LinearBase>> linears() const;

 private:
  std::map<std::string, std::shared_ptr<LinearBase>*> slots_;
};

}  // namespace qat::nn
