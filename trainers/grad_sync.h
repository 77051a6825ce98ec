// Data-parallel gradient synchronization: sums the trainable parameters' gradients over ranks in
// buckets, overlapped with backward.
//
// Parameters are grouped into buckets of about `bucket_bytes`, in reverse registration order
// (roughly the order backward produces their gradients). During the backward of the last
// micro-step of an optimizer step, a hook on each parameter copies its final gradient (what
// earlier micro-steps accumulated plus this one) into the bucket's flat buffer; when a bucket is
// complete it is all-reduced asynchronously while backward continues. Buckets launch strictly in
// order on every rank (a collective must be issued in the same order everywhere); finish() waits
// and writes the sums back into .grad. Frozen parameters (NF4 bases, frozen layers) have no
// gradients and are never communicated: only LoRA adapters and learnable scales travel in QLoRA.
//
// The sum (not mean) is what the trainer wants: it normalizes the loss by the global number of
// target tokens before backward, so the sum over ranks is the gradient of the global mean.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "trainers/dist.h"
#include "trainers/optimizer.h"

namespace qat::train {

class GradSync {
 public:
  GradSync(const std::vector<NamedParam>& params, Communicator& comm,
           int64_t bucket_bytes = 25 << 20);
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // Call before each micro-step's backward: `last` marks the micro-step whose backward should
  // communicate (earlier ones just accumulate locally).
  void prepare(bool last);
  // After the last micro-step's backward: launches what is left, waits, writes the sums to .grad.
  void finish();
  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Bucket {
    at::Tensor flat;              // all its gradients, back to back
    std::vector<size_t> members;  // indices into params_
    size_t pending = 0;           // members whose gradient has not arrived this step
    PendingWork work;
    bool launched = false;
  };
  void on_grad(size_t index, const at::Tensor& grad);
  void launch_ready();

  std::vector<NamedParam> params_;
  std::vector<size_t> bucket_of_, offset_;
  std::vector<Bucket> buckets_;
  std::vector<bool> arrived_;
  std::vector<unsigned> hooks_;  // per parameter, removed by the destructor
  size_t next_launch_ = 0;
  bool active_ = false;
  Communicator& comm_;
};

}  // namespace qat::train
