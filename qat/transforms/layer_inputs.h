// What the layer-by-layer PTQ passes (GPTQ, AWQ) share: the calibration batches turned into the
// first decoder layer's inputs, an exception that cuts a forward once a hook has what it needs,
// and a guard that restores the model's training mode. Internal to qat/transforms.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <vector>

#include "qat/models/llama.h"
#include "qat/transforms/gptq.h"

namespace qat::transforms::detail {

// Per calibration batch: the forward context, the hidden states entering the next decoder layer
// (the embeddings at first) and which positions count (packed padding: false; undefined = all).
struct LayerInputs {
  std::vector<models::ForwardContext> ctx;
  std::vector<at::Tensor> hidden, keep;
};
LayerInputs first_layer_inputs(models::LlamaModel& m, const std::vector<CalibrationBatch>& batches);

// Thrown by an input hook when a pass has all the inputs it needs.
struct StopForward {};

// Restores the model's training mode.
struct ModeGuard {
  torch::nn::Module& m;
  bool training;
  ~ModeGuard() { m.train(training); }
};

}  // namespace qat::transforms::detail
