// method: qat_lora -- QAT + LoRA. The base weights are fake-quantized in the export format and
// frozen; LoRA adapters learn to compensate the rounding. Exported merged, the adapters fold
// into the weights before the final quantization (or ship separately as a PEFT adapter).
#include "qat/fake_quant/fake_quantizer.h"
#include "qat/lora/lora.h"
#include "recipes/methods.h"

namespace qat::recipes {

std::vector<std::string> apply_qat_lora(models::LlamaForCausalLM& model, const RecipeConfig& cfg) {
  std::vector<std::string> swapped = apply_qat(model, cfg);
  lora::apply_lora(model, lora_config(cfg));
  // The frozen base quantizes to the same weights every step and each layer keeps them
  // (FakeQuantizerConfig::cache_frozen); activation checkpointing is asked for to save memory,
  // so there every step quantizes again instead.
  if (cfg.train.activation_checkpointing) {
    for (const auto& m : model.modules())
      if (auto* fq = dynamic_cast<fake_quant::FakeQuantizerImpl*>(m.get()))
        fq->set_cache_frozen(false);
  }
  return swapped;
}

}  // namespace qat::recipes
