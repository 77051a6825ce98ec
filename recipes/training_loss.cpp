// What `qat train` minimizes: next-token cross-entropy, or with `distill.enabled` distillation
// against a frozen teacher (trainers/distill.h) that is built here.
#include <ATen/ATen.h>

#include "qat/models/llama.h"
#include "qat/transforms/prepare.h"
#include "recipes/methods.h"
#include "trainers/distill.h"

namespace qat::recipes {

transforms::PrepareNf4Config teacher_nf4_config(const RecipeConfig& cfg) {
  transforms::PrepareNf4Config nc;  // default rules: every linear but the head and embeddings
  nc.layer = qlora_nf4_config(cfg).layer;
  return nc;
}

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
    case TeacherDtype::kNf4:
      transforms::prepare_nf4(model, teacher_nf4_config(cfg));
      break;
  }
  for (auto& param : model.parameters()) param.set_requires_grad(false);
  model.eval();
  return p.model;
}

train::LossFunction training_loss(const RecipeConfig& cfg, int device_index) {
  // Cross-entropy with the head in chunks: the (tokens, vocab) logits, their softmax and their
  // gradient never exist for the whole batch at once (600 MB at 4 x 256 tokens and SmolLM2's
  // 49,152 words), and the head's gradients are formed as each chunk's softmax is.
  if (!cfg.distill.enabled) return train::chunked_cross_entropy();
  train::HeadLossOptions o;
  o.temperature = cfg.distill.temperature;
  o.ce_weight = cfg.distill.ce_weight;
  o.chunk_rows = cfg.distill.chunk_tokens;
  return train::distillation_loss(build_teacher(cfg, device_index), o);
}

}  // namespace qat::recipes
