#include <ATen/ATen.h>

#if defined(QAT_WITH_CUDA)
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "qat/lora/lora.h"
#include "qat/models/llama.h"
#include "recipes/methods.h"

namespace qat::recipes {

std::string resolve_model_path(const std::string& path) {
  return path == "default" ? models::default_model_path() : path;
}

std::vector<std::string> apply_method(models::LlamaForCausalLM& model, const RecipeConfig& cfg) {
  switch (cfg.method) {
    case Method::kFull:
      return {};
    case Method::kQat:
      return apply_qat(model, cfg);
    case Method::kQlora:
      return apply_qlora(model, cfg);
    case Method::kQatLora:
      return apply_qat_lora(model, cfg);
    case Method::kLora:
      return lora::apply_lora(model, lora_config(cfg));
  }
  TORCH_CHECK(false, "unknown method ", static_cast<int>(cfg.method));
}

models::Pretrained build_model(const RecipeConfig& cfg, int device_index) {
  at::manual_seed(static_cast<uint64_t>(cfg.train.seed));
  torch::TensorOptions options = torch::TensorOptions().dtype(at::kFloat);
  if (cfg.train.device == train::Device::kCuda) {
    TORCH_CHECK(at::hasCUDA(), cfg.source,
                ": train.device=cuda but this build or machine has no CUDA device");
#if defined(QAT_WITH_CUDA)
    const int count = static_cast<int>(c10::cuda::device_count());
    TORCH_CHECK(device_index >= 0 && device_index < count, "rank needs CUDA device ", device_index,
                " (LOCAL_RANK) but ", count, " are visible: use --nproc <= ", count);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
#endif
    options = options.device(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)));
  }
  // qlora: the bases become NF4 while loading (apply_qlora finds them swapped).
  const nn::SlotVisitor on_linear = cfg.method == Method::kQlora
                                        ? transforms::nf4_swapper(qlora_nf4_config(cfg), nullptr)
                                        : nn::SlotVisitor();
  models::Pretrained p =
      models::load_pretrained(resolve_model_path(cfg.model.path), options, on_linear);
  auto& model = *p.model;
  apply_method(model, cfg);
  if (cfg.model.dtype == ModelDtype::kBf16) {
    // Frozen weights in bf16 halve their memory; trainable ones stay float32 master weights
    // (the config refuses model.dtype=bf16 on the CPU).
    c10::NoGradGuard no_grad;
    for (auto& param : model.parameters()) {
      if (!param.requires_grad()) param.set_data(param.to(at::kBFloat16));
    }
  }
  return p;
}

}  // namespace qat::recipes
