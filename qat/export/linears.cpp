#include "qat/export/linears.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "ops/kquant.h"
#include "qat/nn/module_walk.h"

namespace qat::exporting {

at::Tensor LinearView::merged_weight() const {
  torch::NoGradGuard no_grad;
  if (lora) return lora->merged_weight().to(at::kFloat).contiguous();
  return base_weight();
}

at::Tensor LinearView::base_weight() const {
  torch::NoGradGuard no_grad;
  return base->effective_weight().to(at::kFloat).contiguous();
}

std::string LinearView::describe() const {
  std::string s = "dense";
  if (fake_quant) s = "fake-quant " + fake_quant->weight_quantizer()->config().spec.to_string();
  if (nf4) s = "nf4";
  if (lora) s += " + lora";
  return s;
}

FakeQuantWeight fake_quant_weight(const nn::FakeQuantLinear& layer) {
  torch::NoGradGuard no_grad;
  const auto fq = layer.weight_quantizer();
  TORCH_CHECK(fq && fq->active(), "fake_quant_weight: the layer's weight quantizer is not active");
  FakeQuantWeight r;
  // The forward quantizes weight * mask (2:4 sparsity) when a mask is set.
  r.weight =
      layer.sparsity_mask().defined() ? layer.weight() * layer.sparsity_mask() : layer.weight();
  r.spec = fq->config().spec;
  if (scheme::is_kquant(r.spec.format)) {
    r.codes = fq->kquant_blocks(r.weight);
    return r;
  }
  r.qparams = fq->qparams_for(r.weight);
  r.codes = ops::quantize(r.weight, r.spec, r.qparams);
  return r;
}

at::Tensor FakeQuantWeight::values() const {
  if (scheme::is_kquant(spec.format)) return ops::dequantize_kquant(codes, spec, at::kFloat);
  return ops::dequantize(codes, spec, qparams, at::kFloat);
}

std::vector<LinearView> collect_linears(models::LlamaForCausalLM& model) {
  std::vector<LinearView> out;
  nn::for_each_linear(
      model, [&](nn::ModuleWithLinears&, const std::string&, const std::string& full,
                 const std::shared_ptr<nn::LinearBase>& layer) {
        LinearView v;
        v.name = full;
        v.layer = layer;
        v.base = layer;
        if (const auto* l = dynamic_cast<const lora::LoraLinear*>(layer.get())) {
          v.lora = l;
          v.base = l->base();
        }
        if (const auto* f = dynamic_cast<const nn::FakeQuantLinear*>(v.base.get())) {
          if (f->weight_quantizer() && f->weight_quantizer()->active()) v.fake_quant = f;
        } else if (const auto* n = dynamic_cast<const nf4::NF4Linear*>(v.base.get())) {
          v.nf4 = n;
        } else {
          TORCH_CHECK(
              dynamic_cast<const nn::Linear*>(v.base.get()) != nullptr, "export: linear '", full,
              "' is a ", v.base->name(), ", which export does not know (supported: Linear, ",
              "FakeQuantLinear, NF4Linear, each optionally under a LoraLinear); convert() output ",
              "(QuantizedLinear) is exported from the model before convert()");
        }
        out.push_back(std::move(v));
      });
  return out;
}

std::map<std::string, at::Tensor> non_linear_tensors(const models::LlamaForCausalLM& model,
                                                     const std::vector<LinearView>& linears) {
  std::map<std::string, at::Tensor> out;
  auto under_linear = [&](const std::string& name) {
    for (const auto& l : linears) {
      if (name.size() > l.name.size() && name.compare(0, l.name.size(), l.name) == 0 &&
          name[l.name.size()] == '.')
        return true;
    }
    return false;
  };
  for (const auto& p : model.named_parameters()) {
    if (!under_linear(p.key())) out[p.key()] = p.value().detach();
  }
  for (const auto& b : model.named_buffers()) {
    if (!under_linear(b.key())) out[b.key()] = b.value().detach();
  }
  return out;
}

ErrorStats error_stats(const at::Tensor& reference, const at::Tensor& approx) {
  const at::Tensor r = reference.to(at::kDouble);
  const at::Tensor d = approx.to(at::kDouble) - r;
  ErrorStats e;
  e.max_abs = d.numel() ? d.abs().max().item<double>() : 0.0;
  const double norm = r.norm().item<double>();
  e.rel_fro = norm > 0 ? d.norm().item<double>() / norm : 0.0;
  return e;
}

}  // namespace qat::exporting
