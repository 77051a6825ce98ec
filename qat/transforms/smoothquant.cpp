#include "qat/transforms/smoothquant.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

namespace qat::transforms {

void SmoothQuantConfig::validate() const {
  TORCH_CHECK(alpha >= 0.0 && alpha <= 1.0,
              "smoothquant: alpha (the migration strength) must be in ", "[0, 1], got ", alpha);
  TORCH_CHECK(max_tokens >= 1, "smoothquant: max_tokens must be >= 1, got ", max_tokens);
}

AwqSearch smoothquant_scales(const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& x,
                             const SmoothQuantConfig& cfg) {
  cfg.validate();
  TORCH_CHECK(!group.empty(), "smoothquant_scales: an empty group");
  torch::NoGradGuard no_grad;
  const at::Tensor xf = x.reshape({-1, x.size(-1)}).to(at::kFloat);
  std::vector<at::Tensor> columns;
  for (auto* l : group) {
    TORCH_CHECK(l->in_features() == xf.size(1), "smoothquant_scales: inputs of ", xf.size(1),
                " features for a linear of ", l->in_features());
    columns.push_back(l->weight().to(at::kFloat).abs().amax(0));
  }
  // Channels that never fire (or have no weight) keep s = 1 rather than a 0 or infinite scale.
  const at::Tensor x_max = xf.abs().amax(0);
  const at::Tensor w_max = at::stack(columns).amax(0);
  at::Tensor s = x_max.pow(cfg.alpha) / w_max.pow(1.0 - cfg.alpha);
  s = at::where((x_max > 0).logical_and(w_max > 0).logical_and(s.isfinite()), s, at::ones_like(s))
          .clamp_min(1e-5);
  const ScaledError e = scaled_output_error(group, xf, s);
  AwqSearch r;
  r.scales = s;
  r.alpha = cfg.alpha;
  r.rtn_error = e.unscaled;
  r.awq_error = e.scaled;
  return r;
}

std::vector<AwqGroupReport> smoothquant_llama(models::LlamaForCausalLM& model,
                                              const std::vector<CalibrationBatch>& batches,
                                              const SmoothQuantConfig& cfg,
                                              const std::function<void(const std::string&)>& log) {
  cfg.validate();
  const ScaleRule rule = [&cfg](const std::vector<nn::FakeQuantLinear*>& group,
                                const at::Tensor& x) { return smoothquant_scales(group, x, cfg); };
  return scale_llama(model, batches, cfg.max_tokens, rule, "smoothquant", log);
}

}  // namespace qat::transforms
