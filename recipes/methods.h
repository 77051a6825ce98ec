// The methods `qat train` knows, one small file each:
//   qat_finetune.cpp    method: qat       fake-quant every targeted linear, train all weights
//   qlora_finetune.cpp  method: qlora     NF4 (double-quant) frozen base + LoRA adapters
//   qat_lora.cpp        method: qat_lora  fake-quant frozen base + LoRA adapters
//   build_model.cpp     method: lora      float frozen base + LoRA adapters (PEFT's LoRA)
//   (method: full is the unquantized baseline: every weight trains, nothing is swapped)
// build_model() loads the pretrained model named in the config and applies the method; it is
// what train, eval and export all call, so a run directory rebuilds exactly the trained model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qat/lora/lora.h"
#include "qat/models/pretrained.h"
#include "qat/nn/fake_quant_linear.h"
#include "qat/transforms/prepare.h"
#include "recipes/config/recipe_config.h"
#include "trainers/trainer.h"

namespace qat::recipes {

// The fake-quant layer config of the `quant` section (weights in `weight_format`, which is
// q.weight or q.fallback, and optional per-token activations).
nn::FakeQuantLinearConfig fake_quant_layer_config(const QuantSection& q,
                                                  const scheme::QuantSpec& weight_format);

// Each returns the names of the layers it changed.
std::vector<std::string> apply_qat(models::LlamaForCausalLM& model, const RecipeConfig& cfg);
std::vector<std::string> apply_qlora(models::LlamaForCausalLM& model, const RecipeConfig& cfg);
std::vector<std::string> apply_qat_lora(models::LlamaForCausalLM& model, const RecipeConfig& cfg);

// Applies cfg.method to a freshly built model (nothing for full; LoRA adapters over the frozen
// float linears for lora) and returns the names of the layers it changed. build_model() and every
// test or benchmark that builds its own model go through here, so they cannot disagree.
std::vector<std::string> apply_method(models::LlamaForCausalLM& model, const RecipeConfig& cfg);

// quant.init: gptq -- rounds a freshly prepared method-qat model by GPTQ on quant.init_calibration
// sequences of `train_set` (the same ones on every rank), so QAT starts from GPTQ's weights.
// Returns a line for the log; does nothing (empty line) for quant.init: rtn.
std::string init_quantized_weights(models::LlamaForCausalLM& model, const RecipeConfig& cfg,
                                   const train::SequenceSet& train_set);

// Loads cfg.model.path ("default": SmolLM2-135M-Instruct) on the config's device and applies
// cfg.method. For qlora the load streams (qat/models/loader.h): each targeted linear becomes NF4
// as it is read, so the full-precision model never sits in memory whole. Trainable parameters are
// float32; with model.dtype=bf16 frozen ones are bf16. Seeds the generator with train.seed first,
// so LoRA's initial adapters are the same on every rank and in every rebuild. `device_index`: the
// CUDA device (LOCAL_RANK) when train.device is cuda; it becomes current.
models::Pretrained build_model(const RecipeConfig& cfg, int device_index = 0);

// distill.enabled: the frozen teacher (distill.teacher in distill.teacher_dtype, no gradients,
// eval mode) on the same device as build_model's.
std::shared_ptr<models::LlamaForCausalLM> build_teacher(const RecipeConfig& cfg,
                                                        int device_index = 0);

// What training minimizes: next-token cross-entropy, or distillation from build_teacher() when
// distill.enabled (trainers/distill.h).
train::LossFunction training_loss(const RecipeConfig& cfg, int device_index = 0);

// QLoRA's NF4 bases: the LoRA targets minus quant.exclude, nf4.block_size and nf4.double_quant.
transforms::PrepareNf4Config qlora_nf4_config(const RecipeConfig& cfg);

// distill.teacher_dtype nf4: every linear but the head and embeddings, nf4's block size and double
// quant (build_teacher and the memory plan).
transforms::PrepareNf4Config teacher_nf4_config(const RecipeConfig& cfg);

// The LoRA config of the `lora` section (targets, r, alpha, dropout, rsLoRA; quant.exclude).
lora::LoraConfig lora_config(const RecipeConfig& cfg);

// The path that "default" in model.path stands for, or the path itself.
std::string resolve_model_path(const std::string& path);

}  // namespace qat::recipes
