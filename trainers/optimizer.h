// AdamW with decoupled weight decay (Loshchilov & Hutter), written out so its state is plain named
// tensors: a checkpoint saves them as safetensors and a resumed run continues bit for bit.
//
//   m = b1*m + (1-b1)*g          v = b2*v + (1-b2)*g^2
//   p = p*(1 - lr*wd)            (only parameters with decay)
//   p = p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
//
// This is torch.optim.AdamW's update, computed by libtorch's fused kernel (torch.optim.AdamW with
// fused=True). Parameters are the trainable ones, kept in float32 (master weights; bf16 autocast
// only lowers the matmuls).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace qat::train {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  void validate() const;
};

struct NamedParam {
  std::string name;
  at::Tensor param;
};

// Norms, biases and quantizer scales/zero points are not decayed: decaying them shrinks ranges
// and shifts activations rather than regularizing weights.
bool decays(const std::string& name, const at::Tensor& param);

class AdamW {
 public:
  AdamW(std::vector<NamedParam> params, AdamWConfig cfg);
  // Over pieces of parameters (a sharded optimizer's 1-d slices of them): whether each decays is
  // given, since it depends on the whole parameter (decays(name, whole)).
  AdamW(std::vector<NamedParam> params, AdamWConfig cfg, std::vector<bool> decay);

  // One update with learning rate `lr` from the parameters' .grad (a missing grad: not updated).
  void step(double lr);
  // The same from explicit gradients, one per parameter (undefined: not updated).
  void step(double lr, const std::vector<at::Tensor>& grads);
  void zero_grad();
  int64_t steps_taken() const { return step_; }
  const std::vector<NamedParam>& params() const { return params_; }

  // "<param>.exp_avg", "<param>.exp_avg_sq" and "step" (int64 scalar).
  std::map<std::string, at::Tensor> state_dict() const;
  // Every entry must be present with the right shape (or flattened: a sharded checkpoint's
  // reassembled moments): a checkpoint of another config fails here.
  void load_state_dict(const std::map<std::string, at::Tensor>& state);

 private:
  std::vector<NamedParam> params_;
  std::vector<bool> decay_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  AdamWConfig cfg_;
  int64_t step_ = 0;
};

// Sqrt of the sum of squared gradients of `params` (per-tensor norms in float32, their squares
// summed in float64).
double grad_norm(const std::vector<NamedParam>& params);
// Scales the gradients so their norm is at most max_norm; returns the norm before clipping.
double clip_grad_norm(const std::vector<NamedParam>& params, double max_norm);

}  // namespace qat::train
