// Whether the current forward is a recomputation: activation checkpointing (nn::checkpoint,
// qat/nn/checkpoint.h) runs a block a second time in backward to get its activations. Stateful
// modules (FakeQuantizer's step counter and observer, FakeQuantLinear's sparsity mask) must not
// advance then: the recomputation has to see the state the original forward left and reproduce
// its output exactly.
//
// The flag lives here, below qat/nn, because the fake quantizers read it; nn::checkpoint, which
// sets it, depends on this folder rather than the other way round.
#pragma once

namespace qat::fake_quant {

// True while a RecomputeScope is open on this thread.
bool recomputing();

// Marks this thread as recomputing for its lifetime; scopes nest (the previous value is restored).
class RecomputeScope {
 public:
  RecomputeScope();
  ~RecomputeScope();
  RecomputeScope(const RecomputeScope&) = delete;
  RecomputeScope& operator=(const RecomputeScope&) = delete;

 private:
  bool previous_;
};

}  // namespace qat::fake_quant
