// What the trainer itself is configured by: its own sections of a recipe config (train, eval,
// checkpoint, log) and the run directory. The trainer knows nothing about methods, models,
// quantization or data formats; the recipe (recipes/config/recipe_config.h) parses the whole
// YAML, builds the model and the data, and hands the trainer this part plus two strings it
// stores with every checkpoint and a check that a checkpoint belongs to the same experiment.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "trainers/lr_schedule.h"

namespace qat::train {

enum class Device { kCpu, kCuda };
enum class Autocast {
  kAuto,  // bf16 on CUDA, off on the CPU
  kBf16,  // bf16 on CUDA, and on a CPU with bf16 instructions (float32 elsewhere)
  kOff,
};
// train.shard: what data-parallel ranks split among themselves (trainers/shard.h).
enum class ShardMode {
  kNone,       // every rank holds the whole gradients and optimizer state (plain data parallel)
  kOptimizer,  // gradients and AdamW state sharded 1/N per rank, parameters whole (ZeRO-2)
};
enum class Progress {
  kAuto,  // a bar on a TTY, lines otherwise
  kBar,
  kLines,
  kOff,
};

struct TrainSection {
  int64_t steps = 100;
  int64_t micro_batch = 4;  // sequences per rank per micro-step
  int64_t grad_accum = 1;   // micro-steps per optimizer step
  double lr = 2e-5;
  Schedule schedule = Schedule::kCosine;
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0.1;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double max_grad_norm = 1.0;  // 0: no clipping
  int64_t seed = 0;
  bool activation_checkpointing = false;
  Device device = Device::kCpu;
  Autocast autocast = Autocast::kAuto;
  int64_t dist_timeout_s = 300;  // a collective waiting longer means a lost rank
  ShardMode shard = ShardMode::kNone;

  // bf16 autocast is on: CUDA with autocast auto or bf16; the CPU with autocast bf16 where it
  // has bf16 matmul instructions (trainers/autocast.h, which defines this).
  bool bf16() const;
};

struct EvalSection {
  int64_t every = 0;       // optimizer steps between evaluations (0: only at start and end)
  int64_t sequences = 32;  // held-out sequences per evaluation (0: all)
  bool at_start = true;
};

struct CheckpointSection {
  int64_t every = 0;  // optimizer steps between saves (0: only at the end)
  int64_t keep_last = 2;
};

struct LogSection {
  int64_t every = 1;                    // steps between metrics lines
  Progress progress = Progress::kAuto;  // a bar on a TTY, lines, or nothing
  bool plot = true;                     // training-curve PNG beside metrics.jsonl
  bool tensorboard = false;             // event files in <output_dir>/tensorboard as well
};

struct TrainerConfig {
  std::string output_dir = "runs/run";
  bool resume = true;  // continue from output_dir's latest checkpoint when there is one
  TrainSection train;
  EvalSection eval;
  CheckpointSection checkpoint;
  LogSection log;

  std::string run_name = "run";  // what trains, for the plot's title (e.g. the method)
  // The resolved recipe config: written to output_dir/config.yaml and into every checkpoint
  // ("config"), so eval and export can rebuild the model.
  std::string config_yaml;
  // Called on resume with the checkpoint's saved config and its path: throws if that checkpoint
  // was written by a different experiment (another method, model, quantization, data...).
  std::function<void(const std::string& saved_yaml, const std::string& checkpoint)> check_same_run;

  int64_t global_batch(int world_size) const {
    return train.micro_batch * train.grad_accum * world_size;
  }
};

// Creates `dir` (and parents) and checks that a file can be written in it; the error names the
// config key output_dir, the path and the system's reason.
void prepare_output_dir(const std::string& dir);

}  // namespace qat::train
