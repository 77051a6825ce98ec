// method: qat -- quantization-aware fine-tuning. Every linear matching the name rules gets a
// fake quantizer on its weight (and optionally on its input activations); all weights keep
// training in float32 through the straight-through estimator, so they learn to sit well on the
// quantization grid they will be exported to.
#include <chrono>

#include "qat/fake_quant/fake_quantizer.h"
#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "qat/io/llama_mix.h"
#include "qat/transforms/awq.h"
#include "qat/transforms/gptq.h"
#include "qat/transforms/prepare.h"
#include "qat/transforms/smoothquant.h"
#include "recipes/methods.h"
#include "recipes/train_data.h"
#include "trainers/metrics/format.h"

namespace qat::recipes {

nn::FakeQuantLinearConfig fake_quant_layer_config(const QuantSection& q,
                                                  const scheme::QuantSpec& weight_format) {
  using scheme::Granularity;
  fake_quant::FakeQuantizerConfig w;
  w.spec = weight_format;
  if (w.spec.traits().fixed_block == 0 && w.spec.format != scheme::Format::kNf4) {
    // Formats without a block of their own: per group when asked, else per output channel.
    w.spec.granularity =
        q.group_size > 0 ? Granularity::per_group(q.group_size) : Granularity::per_axis(0);
  }
  if (!w.spec.traits().fixed_scale_dtype) w.spec.scale_dtype = q.scale_dtype;
  w.scale_mode = q.scale_mode;
  w.range.method = q.range;
  w.grad = q.grad;
  w.delay_steps = q.delay_steps;
  w.freeze_observer_after = q.freeze_observer_after;
  nn::FakeQuantLinearConfig layer;
  layer.weight = w;
  if (q.activation) {
    fake_quant::FakeQuantizerConfig a;
    a.spec = q.activation.spec->with(Granularity::per_token());
    a.delay_steps = q.delay_steps;
    layer.activation = a;
  }
  return layer;
}

std::vector<std::string> apply_qat(models::LlamaForCausalLM& model, const RecipeConfig& cfg) {
  transforms::PrepareConfig pc;
  pc.exclude = cfg.quant.exclude;
  const std::optional<std::string>& mix = cfg.quant.weight.mix;
  if (mix) {
    // llama.cpp's mixture: every layer in the type llama-quantize would give it, fallbacks
    // included.
    const models::LlamaConfig& mc = model.config();
    pc.layer =
        fake_quant_layer_config(cfg.quant, io::gguf_block_spec(io::llama_mix_base_type(*mix)));
    pc.choose = [&](const std::string& name,
                    const nn::LinearBase& layer) -> std::optional<nn::FakeQuantLinearConfig> {
      const auto gguf = io::hf_to_gguf_name(name + ".weight");
      TORCH_CHECK(gguf, "quant.weight=", cfg.quant.weight.name, ": linear '", name,
                  "' has no GGUF name");
      const io::GgmlType t = io::llama_mix_type(*mix, *gguf, mc.num_hidden_layers,
                                                layer.in_features(), mc.tie_word_embeddings);
      return fake_quant_layer_config(cfg.quant, io::gguf_block_spec(t));
    };
  } else {
    pc.layer = fake_quant_layer_config(cfg.quant, *cfg.quant.weight.spec);
  }
  if (cfg.quant.fallback)
    pc.fallback = fake_quant_layer_config(cfg.quant, *cfg.quant.fallback.spec);
  return transforms::prepare(model, pc);
}

std::string init_quantized_weights(models::LlamaForCausalLM& model, const RecipeConfig& cfg,
                                   const train::SequenceSet& train_set) {
  const QuantInit init = cfg.quant.init;
  if (init == QuantInit::kRtn) return {};
  const auto t0 = std::chrono::steady_clock::now();
  const auto batches =
      calibration_batches(train_set, cfg.quant.init_calibration,
                          static_cast<uint64_t>(cfg.train.seed), cfg.train.micro_batch);
  std::string what;
  if (init == QuantInit::kAwq || init == QuantInit::kAwqGptq) {
    int scaled = 0;
    for (const auto& r : transforms::awq_llama(model, batches, {})) scaled += r.skipped.empty();
    what = "AWQ scaled " + std::to_string(scaled) + " groups";
  }
  if (init == QuantInit::kSmoothQuant) {
    int scaled = 0;
    for (const auto& r : transforms::smoothquant_llama(model, batches, {}))
      scaled += r.skipped.empty();
    what = "SmoothQuant (alpha 0.5) scaled " + std::to_string(scaled) + " groups";
  }
  if (init == QuantInit::kGptq || init == QuantInit::kAwqGptq) {
    const auto reports = transforms::gptq_llama(model, batches, {});
    what += (what.empty() ? "GPTQ rounded " : ", then GPTQ rounded ") +
            std::to_string(reports.size()) + " linears";
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return "init: " + what + " on " +
         std::to_string(std::min(cfg.quant.init_calibration, train_set.size())) +
         " calibration sequences in " + train::format_duration(secs);
}

}  // namespace qat::recipes
