#include "qat/lora/lora.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>
#include <set>

#include "qat/nf4/nf4_linear.h"
#include "qat/nn/module_walk.h"

namespace qat::lora {

double LoraConfig::scaling() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

void LoraConfig::validate() const {
  TORCH_CHECK(r > 0, "LoRA: r must be > 0, got ", r);
  TORCH_CHECK(alpha > 0, "LoRA: alpha must be > 0, got ", alpha);
  TORCH_CHECK(dropout >= 0 && dropout < 1, "LoRA: dropout must be in [0, 1), got ", dropout);
  TORCH_CHECK(adapter_dtype == at::kFloat || adapter_dtype == at::kBFloat16,
              "LoRA: adapter dtype must be float32 or bfloat16, got ", adapter_dtype);
  TORCH_CHECK(!target_modules.empty(), "LoRA: target_modules is empty");
}

namespace {

// Where the base's tensors live, without computing its weight (a fake-quant base would quantize
// it, and a model on the meta device has no values to quantize).
at::Device device_of(const nn::LinearBase& base) {
  for (const auto& p : base.parameters()) return p.device();
  for (const auto& b : base.buffers()) return b.device();
  return base.effective_weight().device();
}

}  // namespace

LoraLinear::LoraLinear(std::shared_ptr<nn::LinearBase> base, const LoraConfig& cfg)
    : nn::LinearBase(base ? base->in_features() : 0, base ? base->out_features() : 0),
      base_(std::move(base)),
      scaling_(cfg.scaling()),
      dropout_(cfg.dropout) {
  TORCH_CHECK(base_, "LoraLinear: the base layer is null");
  cfg.validate();
  TORCH_CHECK(cfg.r <= std::min(in_features_, out_features_), "LoRA: r = ", cfg.r,
              " exceeds the layer's smaller dimension (", in_features_, " x ", out_features_, ")");
  register_module("base_layer", base_);
  const auto device = device_of(*base_);
  const auto opts = at::TensorOptions().dtype(cfg.adapter_dtype).device(device);
  // PEFT's layout: submodules lora_A and lora_B, each with a weight.
  auto lora_a = register_module("lora_A", std::make_shared<torch::nn::Module>());
  auto lora_b = register_module("lora_B", std::make_shared<torch::nn::Module>());
  {
    torch::NoGradGuard no_grad;
    // kaiming_uniform(a = sqrt(5)) on (r, in): bound = sqrt(6 / ((1 + a^2) fan_in)) = 1/sqrt(in),
    // drawn in float32 then cast, so bf16 adapters start from the rounded float32 draw.
    at::Tensor a = at::empty({cfg.r, in_features_}, at::kFloat);
    torch::nn::init::kaiming_uniform_(a, std::sqrt(5.0));
    a_ = lora_a->register_parameter("weight", a.to(opts));
    b_ = lora_b->register_parameter("weight", at::zeros({out_features_, cfg.r}, opts));
  }
}

at::Tensor LoraLinear::forward(const at::Tensor& x) {
  const at::Tensor y = base_->forward(x);
  at::Tensor h = x.to(a_.scalar_type());
  if (dropout_ > 0) h = at::dropout(h, dropout_, is_training());
  const at::Tensor delta = at::linear(at::linear(h, a_), b_) * scaling_;
  return y + delta.to(y.scalar_type());
}

// w + s * B A in float32, or in w's dtype if that is wider.
at::Tensor LoraLinear::merge_into(const at::Tensor& w) const {
  torch::NoGradGuard no_grad;
  const auto dt = at::promote_types(w.scalar_type(), at::kFloat);
  return w.to(dt) + at::matmul(b_.to(dt), a_.to(dt)) * scaling_;
}

at::Tensor LoraLinear::merged_weight() const {
  return merge_into(base_->effective_weight());
}

at::Tensor LoraLinear::effective_weight() const {
  const at::Tensor w = base_->effective_weight();  // dequantizes an NF4 base: once
  return merge_into(w).to(w.scalar_type());
}

std::vector<std::string> apply_lora(torch::nn::Module& model, const LoraConfig& cfg) {
  cfg.validate();
  for (auto& p : model.parameters()) p.set_requires_grad(false);
  std::vector<std::string> wrapped;
  nn::for_each_linear(
      model, [&](nn::ModuleWithLinears& parent, const std::string& slot, const std::string& full,
                 const std::shared_ptr<nn::LinearBase>& layer) {
        if (dynamic_cast<LoraLinear*>(layer.get())) return;  // already adapted
        if (!nn::selected(cfg.target_modules, cfg.exclude, full)) return;
        parent.replace_linear(slot, std::make_shared<LoraLinear>(layer, cfg));
        wrapped.push_back(full);
      });
  TORCH_CHECK(!wrapped.empty(), "apply_lora: no linear layer matched target_modules=",
              c10::Join(",", cfg.target_modules), " exclude=", c10::Join(",", cfg.exclude));
  return wrapped;
}

std::vector<std::pair<std::string, at::Tensor>> lora_parameters(const torch::nn::Module& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : model.named_parameters()) {
    const std::string& n = p.key();
    if (n.find(".lora_A.") != std::string::npos || n.find(".lora_B.") != std::string::npos ||
        n.rfind("lora_A.", 0) == 0 || n.rfind("lora_B.", 0) == 0) {
      out.emplace_back(n, p.value());
    }
  }
  return out;
}

std::vector<std::string> merge_lora(torch::nn::Module& model) {
  std::vector<std::string> merged;
  nn::for_each_linear(
      model, [&](nn::ModuleWithLinears& parent, const std::string& slot, const std::string& full,
                 const std::shared_ptr<nn::LinearBase>& layer) {
        auto* lora = dynamic_cast<LoraLinear*>(layer.get());
        if (!lora) return;
        torch::NoGradGuard no_grad;
        const at::Tensor w = lora->merged_weight();
        const at::Tensor b = lora->bias();
        auto dense = std::make_shared<nn::Linear>(lora->in_features(), lora->out_features(),
                                                  b.defined(), w.options());
        for (auto& p : dense->named_parameters()) {
          if (p.key() == "weight") p.value().copy_(w);
          if (p.key() == "bias") p.value().copy_(b);
        }
        parent.replace_linear(slot, dense);
        merged.push_back(full);
      });
  return merged;
}

std::vector<RequantError> merge_lora_to_nf4(torch::nn::Module& model, int64_t blocksize,
                                            bool double_quant) {
  nf4::NF4Config cfg;
  cfg.blocksize = blocksize;
  cfg.double_quant = double_quant;
  cfg.validate();
  std::vector<RequantError> report;
  const std::vector<std::string> merged = merge_lora(model);
  const std::set<std::string> to_quantize(merged.begin(), merged.end());
  nn::for_each_linear(
      model, [&](nn::ModuleWithLinears& parent, const std::string& slot, const std::string& full,
                 const std::shared_ptr<nn::LinearBase>& layer) {
        if (!to_quantize.count(full)) return;  // only what carried an adapter
        torch::NoGradGuard no_grad;
        auto q = nf4::NF4Linear::from_linear(*layer, cfg);
        const at::Tensor w = layer->effective_weight().to(at::kDouble);
        const at::Tensor d = w - q->effective_weight().to(at::kDouble);
        const double norm = w.norm().item<double>();
        report.push_back(
            {full, d.abs().max().item<double>(), norm > 0 ? d.norm().item<double>() / norm : 0.0});
        parent.replace_linear(slot, q);
      });
  return report;
}

}  // namespace qat::lora
