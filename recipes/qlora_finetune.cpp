// method: qlora -- QLoRA (Dettmers et al. 2023). The targeted linears become frozen NF4 weights
// with double quantization (bitsandbytes' format, byte for byte); LoRA adapters on them are the
// only trainable parameters, so gradients and optimizer state exist for a few million numbers.
#include "qat/lora/lora.h"
#include "qat/nf4/nf4_linear.h"
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
  nf4::NF4Config nc;
  nc.double_quant = cfg.nf4.double_quant;
  nc.blocksize = cfg.nf4.block_size;
  std::vector<std::string> swapped;
  transforms::for_each_linear(model, [&](nn::ModuleWithLinears& parent, const std::string& slot,
                                         const std::string& full,
                                         const std::shared_ptr<nn::LinearBase>& layer) {
    if (!transforms::any_match(lc.target_modules, full) || transforms::any_match(lc.exclude, full))
      return;
    parent.replace_linear(slot, nf4::NF4Linear::from_linear(*layer, nc));
    swapped.push_back(full);
  });
  TORCH_CHECK(!swapped.empty(), "qlora: no linear matches lora.targets");
  lora::apply_lora(model, lc);
  return swapped;
}

}  // namespace qat::recipes
