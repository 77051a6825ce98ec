// The training loop: data-parallel over c10d, gradient accumulation, AdamW with a schedule,
// clipping, evaluation, metrics/progress/plots, atomic checkpoints with exact resume.
//
// One optimizer step: this rank's `grad_accum` micro-batches come from the DistributedSampler;
// the number of target tokens of the whole global batch (all ranks, all micro-steps) is summed
// first, and each micro-step's loss is its summed token cross-entropy divided by that global
// count. Gradients are summed over ranks (GradSync), so the update is the gradient of the mean
// loss over the global batch: world size and accumulation do not change it (up to float
// summation order). Fake-quant step counters are set to the optimizer step before each forward,
// so delay and freeze count optimizer steps.
//
// Failures end the run with a TrainingError naming the step and the last good checkpoint: a
// NaN/Inf loss, running out of memory, and a collective that fails or times out (a lost rank).
#pragma once

#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

#include "trainers/dist.h"
#include "trainers/trainer_config.h"

namespace qat::models {
class LlamaForCausalLM;
struct PackedInputs;
}  // namespace qat::models

namespace qat::train {

// Fixed-length sequences: tokens and labels (N, T) int64, labels aligned with tokens and -100
// where a position is not a target (position t is predicted from tokens before it). Packed data
// also has positions and segments (N, T) (data/dataset/packing.h): attention then stays inside
// each document and rotary positions restart with it. Undefined: one sequence per row.
struct SequenceSet {
  at::Tensor tokens, labels;
  at::Tensor positions, segments;
  int64_t size() const { return tokens.defined() ? tokens.size(0) : 0; }
  int64_t seq_len() const { return tokens.defined() ? tokens.size(1) : 0; }
};

// One micro-batch on the model's device: tokens and labels (B, T), and the packing of its rows
// (null when the data is not packed).
struct Batch {
  at::Tensor tokens, labels;
  const models::PackedInputs* packed = nullptr;
};

// What the trainer minimizes: the SUM of a per-target loss over the batch's targets (labels !=
// -100, position t predicting labels[t + 1]); the trainer divides by the global target count.
using LossFunction = std::function<at::Tensor(models::LlamaForCausalLM&, const Batch&)>;

// The default loss: summed next-token cross-entropy, in float32.
at::Tensor next_token_loss_sum(models::LlamaForCausalLM& model, const Batch& batch);

struct EvalResult {
  double loss = 0;        // mean token cross-entropy
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;     // target tokens evaluated (all ranks)
};

// Mean loss of `model` over `data` (each rank takes every world_size-th sequence; results are
// summed over ranks). `max_sequences` 0 = all. Runs in eval mode without gradients.
EvalResult evaluate(models::LlamaForCausalLM& model, const SequenceSet& data, int64_t batch_size,
                    Communicator& comm, int64_t max_sequences = 0, bool autocast_bf16 = false);

struct TrainSummary {
  int64_t steps = 0;          // optimizer steps completed
  int64_t resumed_from = -1;  // step of the checkpoint resumed from, -1 if none
  std::optional<EvalResult> first_eval, last_eval;
  double train_seconds = 0;
  double tokens_per_second = 0;  // target+context tokens processed per second (all ranks)
  double peak_memory_bytes = 0;  // CUDA allocator peak, or the process's peak RSS on CPU
  std::string last_checkpoint;
  // Bytes of gradients and AdamW moments this rank owns (1/N of them with train.shard optimizer).
  int64_t optimizer_state_bytes = 0;
};

class TrainingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Trainer {
 public:
  // `model` is prepared for the method (fake quant / LoRA / NF4 applied) and on the config's
  // device; its trainable parameters must be float32. `run_info` goes into every checkpoint's
  // trainer_state.json (source model, data description). `loss` is what training minimizes
  // (evaluation always reports next-token cross-entropy).
  Trainer(std::shared_ptr<models::LlamaForCausalLM> model, SequenceSet train_data,
          SequenceSet eval_data, TrainerConfig cfg, Communicator& comm,
          nlohmann::json run_info = nlohmann::json::object(),
          LossFunction loss = next_token_loss_sum);
  ~Trainer();

  // Runs (or resumes, when the output directory holds a checkpoint and cfg.resume) to
  // cfg.train.steps. Throws TrainingError on the failures above.
  TrainSummary fit();

  // For tests: stop after this many steps of this call (simulates an interrupted run), and a
  // callback after every optimizer step (the step count done so far).
  void set_stop_after(int64_t steps) { stop_after_ = steps; }
  void set_step_callback(std::function<void(int64_t)> fn) { on_step_ = std::move(fn); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t stop_after_ = -1;
  std::function<void(int64_t)> on_step_;
};

}  // namespace qat::train
