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

transforms::PrepareNf4Config qlora_nf4_config(const RecipeConfig& cfg) {
  const lora::LoraConfig lc = lora_config(cfg);
  transforms::PrepareNf4Config nc{lc.target_modules, lc.exclude, {}};
  nc.layer.double_quant = cfg.nf4.double_quant;
  nc.layer.blocksize = cfg.nf4.block_size;
  return nc;
}

std::vector<std::string> apply_qlora(models::LlamaForCausalLM& model, const RecipeConfig& cfg) {
  // build_model() streams the checkpoint through transforms::nf4_swapper, so its bases arrive as
  // NF4 already; a model loaded whole (tests, benchmarks) is swapped here.
  std::vector<std::string> swapped;
  nn::for_each_linear(model,
                      [&](nn::ModuleWithLinears&, const std::string&, const std::string& full,
                          const std::shared_ptr<nn::LinearBase>& layer) {
                        if (dynamic_cast<nf4::NF4Linear*>(layer.get())) swapped.push_back(full);
                      });
  if (swapped.empty()) swapped = transforms::prepare_nf4(model, qlora_nf4_config(cfg));
  lora::apply_lora(model, lora_config(cfg));
  return swapped;
}

}  // namespace qat::recipes
