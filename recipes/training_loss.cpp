// What `qat train` minimizes: next-token cross-entropy, or with `distill.enabled` distillation
// against a frozen teacher (trainers/distill.h) that is built here.
#include <ATen/ATen.h>

#include "qat/models/llama.h"
#include "qat/transforms/prepare.h"
#include "recipes/methods.h"
#include "trainers/distill.h"

namespace qat::recipes {

std::shared_ptr<models::LlamaForCausalLM> build_teacher(const RecipeConfig& cfg, int device_index) {
  RecipeConfig t = cfg;  // the teacher is the starting model, or the named one, unquantized
  t.method = Method::kFull;
  t.model.dtype = ModelDtype::kFp32;
  if (cfg.distill.teacher != "start") t.model.path = cfg.distill.teacher;
  models::Pretrained p = build_model(t, device_index);
  auto& model = *p.model;
  c10::NoGradGuard no_grad;
  switch (cfg.distill.teacher_dtype) {
    case TeacherDtype::kFp32:
      break;
    case TeacherDtype::kBf16:
      for (auto& param : model.parameters()) param.set_data(param.to(at::kBFloat16));
      break;
    case TeacherDtype::kNf4: {
      transforms::PrepareNf4Config nc;  // every linear but the head and embeddings
      nc.layer.double_quant = cfg.nf4.double_quant;
      nc.layer.blocksize = cfg.nf4.block_size;
      transforms::prepare_nf4(model, nc);
      break;
    }
  }
  for (auto& param : model.parameters()) param.set_requires_grad(false);
  model.eval();
  return p.model;
}

train::LossFunction training_loss(const RecipeConfig& cfg, int device_index) {
  if (!cfg.distill.enabled) return train::next_token_loss_sum;
  train::HeadLossOptions o;
  o.temperature = cfg.distill.temperature;
  o.ce_weight = cfg.distill.ce_weight;
  o.chunk_rows = cfg.distill.chunk_tokens;
  return train::distillation_loss(build_teacher(cfg, device_index), o);
}

}  // namespace qat::recipes
