// Training checkpoints: one directory per save under <run>/checkpoints/step-NNNNNNN/ with
//   model.safetensors      training_state(model) (trainable weights, quantizer state)
//   optimizer.safetensors  AdamW moments and step
//   rng.safetensors        generator states ("cpu", "cuda:N")
//   trainer_state.json     step, data cursor, metrics so far, the resolved config, the source model
//
// A save is atomic: files go to a hidden temp directory, are fsync'ed, and the directory is
// renamed into place, so a process killed mid-save (even SIGKILL) leaves the previous checkpoint
// as the latest complete one; leftover temp directories are removed by the next save. Only the
// newest `keep_last` checkpoints are kept.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace qat::train {

struct CheckpointData {
  std::map<std::string, at::Tensor> model;
  std::map<std::string, at::Tensor> optimizer;
  std::map<std::string, at::Tensor> rng;
  nlohmann::json state;  // must hold "step"
};

// Writes `data` as step-<step> in `checkpoints_dir` (created if needed) and prunes old ones
// (keep_last <= 0 keeps all). Returns the checkpoint's path.
std::string save_checkpoint(const std::string& checkpoints_dir, int64_t step,
                            const CheckpointData& data, int keep_last);

// "step-0000123": the directory name of the checkpoint of `step`.
std::string checkpoint_name(int64_t step);

// The newest complete checkpoint in `checkpoints_dir`, if any.
std::optional<std::string> latest_checkpoint(const std::string& checkpoints_dir);

// Reads a checkpoint directory (or a run directory: its latest checkpoint). Missing or corrupt
// files are errors naming the file.
CheckpointData load_checkpoint(const std::string& path);

// The step of a checkpoint directory, read from its trainer_state.json alone (no tensors).
int64_t checkpoint_step(const std::string& checkpoint_dir);

// Resolves a run directory, a checkpoints directory or a checkpoint directory to a checkpoint.
std::string resolve_checkpoint(const std::string& path);

// Generator states of this process (CPU, and the current CUDA device when `cuda`).
std::map<std::string, at::Tensor> rng_state(bool cuda);
void set_rng_state(const std::map<std::string, at::Tensor>& state);

}  // namespace qat::train
