// method: qlora -- QLoRA (Dettmers et al. 2023). The targeted linears become frozen NF4 weights
// with double quantization (bitsandbytes' format, byte for byte); LoRA adapters on them are the
// only trainable parameters, so gradients and optimizer state exist for a few million numbers.
#include "qat/lora/lora.h"
#include "qat/transforms/prepare.h"
#include "recipes/methods.h"

namespace qat::recipes {

lora::LoraConfig lora_config(const RecipeConfig& cfg) {
  lora::LoraConfig lc;
  lc.r = cfg.lora.r;
  lc.alpha = cfg.lora.alpha;
  lc.dropout = cfg.lora.dropout;
  lc.use_rslora = cfg.lora.rslora;
  lc.target_modules = cfg.lora.targets;
  lc.exclude = cfg.quant.exclude;
  return lc;
}

std::vector<std::string> apply_qlora(models::LlamaForCausalLM& model, const RecipeConfig& cfg) {
  const lora::LoraConfig lc = lora_config(cfg);
  transforms::PrepareNf4Config nc{lc.target_modules, lc.exclude, {}};
  nc.layer.double_quant = cfg.nf4.double_quant;
  nc.layer.blocksize = cfg.nf4.block_size;
  const std::vector<std::string> swapped = transforms::prepare_nf4(model, nc);
  lora::apply_lora(model, lc);
  return swapped;
}

}  // namespace qat::recipes
