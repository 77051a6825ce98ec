// method: qat -- quantization-aware fine-tuning. Every linear matching the name rules gets a
// fake quantizer on its weight (and optionally on its input activations); all weights keep
// training in float32 through the straight-through estimator, so they learn to sit well on the
// quantization grid they will be exported to.
#include "recipes/methods.h"

#include "qat/fake_quant/fake_quantizer.h"
#include "qat/transforms/prepare.h"

namespace qat::recipes {

nn::FakeQuantLinearConfig fake_quant_layer_config(const train::QuantSection& q,
                                                  const std::string& weight_format) {
  using scheme::Granularity;
  using scheme::QuantSpec;
  fake_quant::FakeQuantizerConfig w;
  w.spec = QuantSpec::from_name(weight_format);
  if (w.spec.traits().fixed_block == 0 && w.spec.format != scheme::Format::kNf4) {
    // Formats without a block of their own: per group when asked, else per output channel.
    w.spec.granularity = q.group_size > 0 ? Granularity::per_group(q.group_size) : Granularity::per_axis(0);
  }
  w.scale_mode = fake_quant::scale_mode_from_name(q.scale_mode);
  w.range.method = fake_quant::range_method_from_name(q.range);
  w.grad = q.grad == "clipped_ste" ? fake_quant::GradMode::kClippedSte : fake_quant::GradMode::kSte;
  w.delay_steps = q.delay_steps;
  w.freeze_observer_after = q.freeze_observer_after;
  nn::FakeQuantLinearConfig layer;
  layer.weight = w;
  if (q.activation != "none") {
    fake_quant::FakeQuantizerConfig a;
    a.spec = QuantSpec::from_name(q.activation).with(Granularity::per_token());
    a.delay_steps = q.delay_steps;
    layer.activation = a;
  }
  return layer;
}

std::vector<std::string> apply_qat(models::LlamaForCausalLM& model, const train::TrainConfig& cfg) {
  transforms::PrepareConfig pc;
  pc.exclude = cfg.quant.exclude;
  pc.layer = fake_quant_layer_config(cfg.quant, cfg.quant.weight);
  if (cfg.quant.fallback != "none") pc.fallback = fake_quant_layer_config(cfg.quant, cfg.quant.fallback);
  return transforms::prepare(model, pc);
}

}  // namespace qat::recipes
