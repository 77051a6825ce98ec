// method: qat_lora -- QAT + LoRA. The base weights are fake-quantized in the export format and
// frozen; LoRA adapters learn to compensate the rounding. Exported merged, the adapters fold
// into the weights before the final quantization (or ship separately as a PEFT adapter).
#include "qat/lora/lora.h"
#include "recipes/methods.h"

namespace qat::recipes {

std::vector<std::string> apply_qat_lora(models::LlamaForCausalLM& model, const RecipeConfig& cfg) {
  std::vector<std::string> swapped = apply_qat(model, cfg);
  lora::apply_lora(model, lora_config(cfg));
  return swapped;
}

}  // namespace qat::recipes
