// The memory plan of a training run: what one rank of `qat train` holds, predicted from the
// model's shape and the recipe before anything is loaded (`qat plan <config>`, and the run header
// of `qat train`).
//
// The state a rank owns is counted, not estimated: the model is built with the recipe's method
// applied on the meta device (no memory; the same code registers the same tensors as a real build)
// and its tensors' bytes are summed; NF4 bases are counted with NF4Tensor::packed_nbytes, since
// quantizing needs values. Gradients (one per trainable parameter) and AdamW's two moments follow.
// What a step allocates on top is an estimate: activations saved for backward (the decoder's
// tensors at micro_batch x seq_len, or only each layer's input with activation checkpointing), the
// chunked head loss, data-parallel gradient buckets and a distillation teacher.
#pragma once

#include <cstdint>
#include <string>

#include "qat/models/llama_config.h"
#include "recipes/config/recipe_config.h"

namespace qat::recipes {

struct MemoryPlan {
  // Owned state, exact (bytes of the tensors of that kind on one rank).
  int64_t trainable = 0;  // trainable parameters (float32 master weights)
  int64_t frozen = 0;     // frozen dense parameters and buffers (bases, embeddings, norms)
  int64_t packed = 0;     // NF4 bases: codes, absmax, nested absmax, offset, bias
  int64_t gradients = 0;  // one per trainable parameter
  int64_t optimizer = 0;  // AdamW's exp_avg and exp_avg_sq
  // Per step, estimated.
  int64_t fake_quant = 0;    // fake-quantized weights kept for backward (or qat_lora's cache)
  int64_t activations = 0;   // decoder activations saved for backward
  int64_t head_loss = 0;     // one chunk of the head's logits, softmax and gradient
  int64_t grad_buckets = 0;  // data parallel (world size > 1): the flat all-reduce buffers
  int64_t teacher = 0;       // distillation: the frozen teacher's weights
  int world_size = 1;
  bool sharded = false;  // train.shard: optimizer with more than one rank

  int64_t owned() const { return trainable + frozen + packed + gradients + optimizer; }
  int64_t total() const {
    return owned() + fake_quant + activations + head_loss + grad_buckets + teacher;
  }
  // The plan as a table (one row per part, what it is, and whether it is counted or estimated).
  std::string table() const;
  // One line for a run header: the total and its largest parts.
  std::string summary() const;
};

// The plan for `cfg` on a model of shape `model` with `world_size` ranks (data parallel: every
// rank holds the whole model; with train.shard: optimizer, rank 0's share of the gradients and
// AdamW moments, the largest of any rank).
MemoryPlan plan_memory(const models::LlamaConfig& model, const RecipeConfig& cfg,
                       int world_size = 1);

// The shape of cfg.model.path ("default" included) from its config.json or GGUF metadata, without
// reading the weights.
models::LlamaConfig model_shape(const RecipeConfig& cfg);

}  // namespace qat::recipes
