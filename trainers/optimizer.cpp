#include "trainers/optimizer.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace qat::train {

void AdamWConfig::validate() const {
  TORCH_CHECK(beta1 >= 0 && beta1 < 1, "train.beta1 must be in [0, 1), got ", beta1);
  TORCH_CHECK(beta2 >= 0 && beta2 < 1, "train.beta2 must be in [0, 1), got ", beta2);
  TORCH_CHECK(eps > 0, "train.eps must be > 0, got ", eps);
  TORCH_CHECK(weight_decay >= 0, "train.weight_decay must be >= 0, got ", weight_decay);
}

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool decays(const std::string& name, const at::Tensor& param) {
  if (param.dim() < 2) return false;
  return !(ends_with(name, ".scale") || ends_with(name, ".zero_point") ||
           ends_with(name, ".sub_scale") || ends_with(name, ".sub_min"));
}

AdamW::AdamW(std::vector<NamedParam> params, AdamWConfig cfg)
    : AdamW(params, cfg, [&] {
        std::vector<bool> d;
        for (const auto& p : params) d.push_back(decays(p.name, p.param));
        return d;
      }()) {}

AdamW::AdamW(std::vector<NamedParam> params, AdamWConfig cfg, std::vector<bool> decay)
    : params_(std::move(params)), decay_(std::move(decay)), cfg_(cfg) {
  cfg_.validate();
  TORCH_CHECK(decay_.size() == params_.size(), "AdamW: one decay flag per parameter");
  for (const auto& p : params_) {
    TORCH_CHECK(p.param.scalar_type() == at::kFloat, "AdamW keeps float32 master weights, but ",
                p.name, " is ", p.param.scalar_type(), ": build trainable parameters in float32");
    exp_avg_.push_back(at::zeros_like(p.param, at::MemoryFormat::Contiguous));
    exp_avg_sq_.push_back(at::zeros_like(p.param, at::MemoryFormat::Contiguous));
  }
}

void AdamW::step(double lr) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params_) grads.push_back(p.param.grad());
  step(lr, grads);
}

void AdamW::step(double lr, const std::vector<at::Tensor>& grads) {
  TORCH_CHECK(grads.size() == params_.size(), "AdamW::step: one gradient per parameter");
  c10::NoGradGuard no_grad;
  ++step_;
  // libtorch's fused AdamW kernel: one pass over each parameter, its gradient and both moments
  // (the unfused update is seven passes and two temporaries per parameter). It reads the step
  // count from `state_steps`; one scalar serves every parameter. Two calls: with and without
  // decay. A parameter without a gradient is not touched, as in torch.
  if (params_.empty()) return;
  const at::Tensor steps = at::scalar_tensor(static_cast<double>(step_),
                                             params_.front().param.options().dtype(at::kFloat));
  for (const bool with_decay : {true, false}) {
    std::vector<at::Tensor> p, g, m, v, t;
    for (size_t i = 0; i < params_.size(); ++i) {
      const at::Tensor& grad = grads[i];
      if (!grad.defined() || decay_[i] != with_decay) continue;
      p.push_back(params_[i].param);
      g.push_back(grad.is_contiguous() ? grad : grad.contiguous());
      m.push_back(exp_avg_[i]);
      v.push_back(exp_avg_sq_[i]);
      t.push_back(steps);
    }
    if (p.empty()) continue;
    at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, t, lr, cfg_.beta1, cfg_.beta2,
                      with_decay ? cfg_.weight_decay : 0.0, cfg_.eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_) {
    if (p.param.grad().defined()) p.param.mutable_grad().reset();
  }
}

std::map<std::string, at::Tensor> AdamW::state_dict() const {
  std::map<std::string, at::Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out[params_[i].name + ".exp_avg"] = exp_avg_[i];
    out[params_[i].name + ".exp_avg_sq"] = exp_avg_sq_[i];
  }
  out["step"] = at::scalar_tensor(step_, at::kLong);
  return out;
}

void AdamW::load_state_dict(const std::map<std::string, at::Tensor>& state) {
  c10::NoGradGuard no_grad;
  auto get = [&](const std::string& key, const at::Tensor& like) {
    auto it = state.find(key);
    TORCH_CHECK(it != state.end(), "optimizer state has no '", key,
                "': the checkpoint was written for other trainable parameters (a different method, "
                "LoRA targets or quantization config)");
    const bool flat = it->second.dim() == 1 && it->second.numel() == like.numel();
    TORCH_CHECK(it->second.sizes() == like.sizes() || flat, "optimizer state '", key,
                "' has shape ", it->second.sizes(), " but the parameter has ", like.sizes());
    return it->second.view(like.sizes());
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_(get(params_[i].name + ".exp_avg", exp_avg_[i]));
    exp_avg_sq_[i].copy_(get(params_[i].name + ".exp_avg_sq", exp_avg_sq_[i]));
  }
  auto it = state.find("step");
  TORCH_CHECK(it != state.end(), "optimizer state has no 'step'");
  step_ = it->second.item<int64_t>();
  TORCH_CHECK(state.size() == 2 * params_.size() + 1, "optimizer state has ", state.size(),
              " entries, expected ", 2 * params_.size() + 1,
              ": the checkpoint was written for other trainable parameters");
}

namespace {

// The gradients that exist (a parameter unused this step has none).
std::vector<at::Tensor> defined_grads(const std::vector<NamedParam>& params) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.param.grad().defined()) grads.push_back(p.param.grad());
  return grads;
}

}  // namespace

double grad_norm(const std::vector<NamedParam>& params) {
  const std::vector<at::Tensor> grads = defined_grads(params);
  if (grads.empty()) return 0.0;
  // Each gradient's norm in one pass over it (float32, libtorch's cascaded sum), the squares of
  // those summed in float64.
  const std::vector<at::Tensor> norms = at::_foreach_norm(grads, 2);
  const at::Tensor per = at::stack(norms).to(at::kDouble);
  return std::sqrt(per.mul(per).sum().item<double>());
}

double clip_grad_norm(const std::vector<NamedParam>& params, double max_norm) {
  const double norm = grad_norm(params);
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) {
    c10::NoGradGuard no_grad;
    const double coef = max_norm / (norm + 1e-6);
    std::vector<at::Tensor> grads = defined_grads(params);
    at::_foreach_mul_(grads, coef);
  }
  return norm;
}

}  // namespace qat::train
