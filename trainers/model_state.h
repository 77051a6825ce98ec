// What a training run changes in a model, as named tensors for checkpoints: the trainable
// parameters (all weights in full QAT, adapters in LoRA/QLoRA, learned scales), the buffers of
// fake-quant modules (step counters that drive delay/freeze, 2:4 masks, LSQ init flags) and the
// static observers' ranges ("<quantizer>.observer.lo/hi/shape"). Frozen weights are not saved:
// a resumed or exported run rebuilds them from the base model named in its config.
#pragma once

#include <torch/nn/module.h>

#include <map>
#include <string>
#include <vector>

#include "trainers/optimizer.h"

namespace qat::train {

std::vector<NamedParam> trainable_parameters(torch::nn::Module& model);

std::map<std::string, at::Tensor> training_state(torch::nn::Module& model);
// Copies `state` into the model; every entry must name a tensor of the model with the same
// shape, and every trainable parameter must be present.
void load_training_state(torch::nn::Module& model, const std::map<std::string, at::Tensor>& state);

// Sets every fake quantizer's (and fake-quant linear's) step counter to `step`.
void set_quantizer_steps(torch::nn::Module& model, int64_t step);

}  // namespace qat::train
