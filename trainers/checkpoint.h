// Training checkpoints: one directory per save under <run>/checkpoints/step-NNNNNNN/ with
//   model.safetensors      training_state(model) (trainable weights, quantizer state)
//   optimizer.safetensors  AdamW moments and step, or with a sharded optimizer one file per rank:
//   optimizer-rank-R-of-N.safetensors  that rank's pieces of the moments (trainers/shard.h)
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
#include <vector>

namespace qat::train {

struct CheckpointData {
  std::map<std::string, at::Tensor> model;
  std::map<std::string, at::Tensor> optimizer;  // empty: the optimizer is in `adopt`'s shards
  // Files already written and flushed elsewhere (each rank's optimizer shard) that the save moves
  // into the checkpoint before it is renamed into place.
  std::vector<std::string> adopt;
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
// files are errors naming the file. A sharded optimizer is reassembled (load_optimizer_state).
CheckpointData load_checkpoint(const std::string& path);

// The step of a checkpoint directory, read from its trainer_state.json alone (no tensors).
int64_t checkpoint_step(const std::string& checkpoint_dir);

// Resolves a run directory, a checkpoints directory or a checkpoint directory to a checkpoint.
std::string resolve_checkpoint(const std::string& path);

// Where rank `rank` of `world_size` writes its optimizer shard before a save of `step` adopts it:
// <checkpoints_dir>/.shards-step-NNNNNNN/optimizer-rank-R-of-N.safetensors.
std::string optimizer_shard_path(const std::string& checkpoints_dir, int64_t step, int rank,
                                 int world_size);
// Writes and flushes one rank's optimizer shard there.
void save_optimizer_shard(const std::string& path, const std::map<std::string, at::Tensor>& shard);

// The whole optimizer state of a checkpoint directory: optimizer.safetensors, or its
// optimizer-rank-R-of-N.safetensors files joined in rank order (moments flattened to 1-d).
// Missing, extra or inconsistent shards are errors naming the files.
std::map<std::string, at::Tensor> load_optimizer_state(const std::string& checkpoint_dir);

// Generator states of this process (CPU, and the current CUDA device when `cuda`).
std::map<std::string, at::Tensor> rng_state(bool cuda);
void set_rng_state(const std::map<std::string, at::Tensor>& state);

}  // namespace qat::train
