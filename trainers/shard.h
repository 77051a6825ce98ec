// Sharded optimizer state over data-parallel ranks (train.shard: optimizer, as ZeRO-2).
//
// Every trainable parameter is split into world_size contiguous pieces of its flattened elements
// (the piece size rounded up to 16 elements, a 64-byte line of float32; the last pieces may be
// shorter or empty), and rank r owns piece r of every parameter: its reduced gradient, its AdamW
// moments and its update. One optimizer step:
//
//   1. backward accumulates full gradients locally, as without sharding;
//   2. reduce_gradients(): each gradient's pieces are laid out rank-major in one flat buffer and
//      reduce-scattered, so this rank keeps the summed gradient of its pieces only, and the full
//      .grad tensors are freed;
//   3. clip(): the global gradient norm from the owned pieces (each piece's norm in float32, the
//      squares summed in float64 here and over ranks);
//   4. step(): AdamW on the owned pieces (libtorch's fused kernel, elementwise: the same bits as
//      updating the whole parameter);
//   5. the updated pieces are all-gathered so every rank holds the whole parameters again.
//
// The update equals the unsharded one element for element; only the gradient norm is summed in
// another order (so clipping can differ by rounding). The moments, 2/3 of AdamW's state, and the
// reduced gradients fall as 1/world_size per rank; the flat communication buffer is transient.
//
// Checkpoints: each rank saves its pieces' moments (optimizer_shard()), a checkpoint holds
// "optimizer-rank-R-of-N.safetensors" files, and load_optimizer_state() reassembles the whole
// moments from any world size, so a run resumes on the same or another number of ranks, sharded
// or not.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trainers/dist.h"
#include "trainers/optimizer.h"

namespace qat::train {

// Elements [begin, end) of a flattened tensor of `numel` elements that `rank` owns.
struct ShardRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
// The piece size of a tensor split over `world_size` ranks: ceil(numel / world_size), rounded up
// to whole 16-element lines.
int64_t shard_piece_size(int64_t numel, int world_size);
ShardRange shard_range(int64_t numel, int world_size, int rank);

class ShardedOptimizer {
 public:
  ShardedOptimizer(std::vector<NamedParam> params, AdamWConfig cfg, Communicator& comm);

  // Steps 2-5 above. reduce_gradients() after the last micro-step's backward; a parameter that no
  // rank gave a gradient this step stays untouched by step(), as without sharding.
  void reduce_gradients();
  // The global gradient norm; scales the owned gradients so it is at most max_norm (0: no clip).
  double clip(double max_norm);
  void step(double lr);
  void zero_grad();

  // This rank's pieces of the moments ("<param>.exp_avg" as 1-d tensors of the piece) and "step".
  std::map<std::string, at::Tensor> optimizer_shard() const;
  // From whole moments (load_optimizer_state): takes this rank's pieces.
  void load_state_dict(const std::map<std::string, at::Tensor>& full_state);
  int64_t steps_taken() const { return opt_->steps_taken(); }

  // Bytes of the state this rank owns: moments and reduced gradients of its pieces.
  int64_t owned_state_bytes() const;
  const std::vector<ShardRange>& ranges() const { return ranges_; }

 private:
  void all_gather_params();

  std::vector<NamedParam> params_;
  std::vector<ShardRange> ranges_;       // this rank's piece of each parameter
  std::vector<int64_t> piece_, offset_;  // per parameter: piece size, offset in a rank's segment
  int64_t segment_ = 0;                  // elements of one rank's segment (all its pieces)
  std::vector<size_t> owned_;            // parameters whose piece here is not empty
  std::unique_ptr<AdamW> opt_;           // over the owned pieces (views into the parameters)
  at::Tensor grad_shard_;                // [segment_]: the reduced gradients of this rank's pieces
  std::vector<bool> has_grad_;           // per parameter: some rank produced a gradient this step
  Communicator& comm_;
};

}  // namespace qat::train
