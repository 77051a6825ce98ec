// Activation checkpointing: run a block without keeping its activations, and run it again in
// backward to get them. libtorch has no torch.utils.checkpoint, so this is an autograd Function:
// forward runs `fn` under no_grad; backward re-runs it with grad on a detached copy of the input
// and differentiates the recomputed graph with respect to the input and the block's trainable
// parameters. The parameters are inputs of the Function, so the block takes part in backward
// even when its input needs no gradient (LoRA over a frozen embedding).
//
// Limits: `fn` must be deterministic (Llama layers are: no dropout) and take/return one tensor;
// other inputs it needs (rotary tables, masks) are captured and must not require grad.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace qat::nn {

using BlockFn = std::function<at::Tensor(const at::Tensor&)>;

// `params`: the block's parameters; those that require grad receive their gradients. While
// backward re-runs the block, fake_quant::recomputing() (qat/fake_quant/recompute.h) is true, so
// stateful modules (step counters, observers, sparsity masks) do not advance a second time.
at::Tensor checkpoint(const BlockFn& fn, const at::Tensor& input,
                      const std::vector<at::Tensor>& params);

}  // namespace qat::nn
