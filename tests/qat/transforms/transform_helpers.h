// Helpers the transform tests (GPTQ, AWQ, SmoothQuant, prepare/convert) share.
#pragma once

#include <torch/nn/module.h>

#include <memory>
#include <string>

#include "qat/fake_quant/fake_quantizer.h"
#include "qat/models/llama.h"
#include "qat/nn/fake_quant_linear.h"
#include "qat/nn/module_walk.h"

namespace qat::test {

// A weight quantizer of format `name`; `g` applies to the formats without a fixed block (not NF4).
inline fake_quant::FakeQuantizerConfig weight_cfg(
    const std::string& name, scheme::Granularity g,
    fake_quant::ScaleMode mode = fake_quant::ScaleMode::kDynamic) {
  fake_quant::FakeQuantizerConfig c;
  c.spec = scheme::QuantSpec::from_name(name);
  if (c.spec.traits().fixed_block == 0 && c.spec.format != scheme::Format::kNf4)
    c.spec.granularity = g;
  c.scale_mode = mode;
  return c;
}

// Turns every fake-quant linear's weight and activation quantizers on or off.
inline void set_fake_quant(models::LlamaForCausalLM& m, bool on) {
  nn::for_each_linear(m, [&](nn::ModuleWithLinears&, const std::string&, const std::string&,
                             const std::shared_ptr<nn::LinearBase>& l) {
    if (auto* f = dynamic_cast<nn::FakeQuantLinear*>(l.get())) {
      if (f->weight_quantizer()) f->weight_quantizer()->set_enabled(on);
      if (f->activation_quantizer()) f->activation_quantizer()->set_enabled(on);
    }
  });
}

// The model's logits in eval mode, without autograd.
inline at::Tensor eval_logits(models::LlamaForCausalLM& m, const at::Tensor& ids) {
  torch::NoGradGuard g;
  m.eval();
  return m.forward(ids);
}

}  // namespace qat::test
