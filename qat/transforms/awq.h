// AWQ: activation-aware weight quantization (Lin et al., 2024, "AWQ: Activation-aware Weight
// Quantization for LLM Compression and Acceleration", arXiv:2306.00978), in the formats of this
// project.
//
// A few input channels of a linear carry most of the activation magnitude; their weights matter
// most. AWQ scales each input channel j of the weight up by s_j and the input down by the same
// factor, y = (W diag(s)) (diag(s)^-1 x), which leaves the float function unchanged and rounds the
// salient columns more finely. The division is folded into the operation before the linear, so
// nothing is added at inference:
//   q/k/v   <- input_layernorm's weight       gate/up <- post_attention_layernorm's weight
//   o_proj  <- v_proj's output rows (only when they match o_proj's inputs: no grouped-query
//              attention, as the paper's code does)
//   down    <- up_proj's output rows (down's input is silu(gate x) * up x)
// Per group of linears that share an input, the scales are s = mean|x|^alpha normalised by
// sqrt(max s * min s), alpha searched on a grid over [0, 1) for the least output error
//   E(s) = sum over the group's linears of ||W X - Q(W diag(s)) diag(s)^-1 X||^2
// on the calibration inputs X, Q being the layer's own fake quantization (any weight format with
// scales computed from the weight: int groups, the GGUF block formats and k-quants, NF4, ...).
// alpha = 0 is s = 1, round to nearest, so the search never does worse than RTN on X. (The paper
// measures the error at the output of the whole attention block for q/k/v; we take the sum over
// the linears' outputs, as AutoAWQ does for a module without an inspect target. Its weight
// clipping search is not done here; GPTQ after AWQ is the stronger second step.)
//
// What is deployed is what the model computes: the result is a float model (the scaled weights
// and norms) whose fake quantization is the AWQ rounding, so it exports bit-exactly like any
// fake-quant model, and GPTQ or QAT can continue from it.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "qat/models/llama.h"
#include "qat/nn/fake_quant_linear.h"
#include "qat/transforms/gptq.h"

namespace qat::transforms {

struct AwqConfig {
  int64_t grid = 20;          // alphas 0, 1/grid, ..., (grid - 1)/grid
  int64_t max_tokens = 4096;  // calibration inputs per group the search uses (the first ones)
  void validate() const;
};

// Throws unless channel scaling (`method`: "awq", "smoothquant") can scale this layer: an active
// weight quantizer whose scales follow the weight (quant.scale_mode dynamic; not static, learnable
// or a delayed start), no 2:4 sparsity; for AWQ no activation fake quant, for SmoothQuant only
// dynamic (per-batch) activation scales, which follow the smoothed input.
void check_awq_layer(const nn::FakeQuantLinear& layer, const std::string& name,
                     const std::string& method = "awq");

struct AwqSearch {
  at::Tensor scales;  // (in,) float32: multiply the weights' columns, divide the input
  double alpha = 0;
  double rtn_error = 0;  // E(1) / E0, E0 = sum ||W X||^2: round to nearest, relative
  double awq_error = 0;  // E(s) / E0 at the chosen alpha
};

// The relative output error of a group on inputs x with channel scales s, and without (s = 1):
// sum ||W X^T - Q(W diag(s)) A(X / s)^T||^2 / sum ||W X^T||^2, Q the weight fake quant and A the
// layer's activation fake quant (identity without one).
struct ScaledError {
  double unscaled = 0, scaled = 0;
};
ScaledError scaled_output_error(const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& x,
                                const at::Tensor& s);

// The grid search for linears that share the input `x` (rows, in), weights as they stand.
AwqSearch awq_search(const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& x,
                     const AwqConfig& cfg);

// Folding (no gradients): every member's weight columns *= s, and the operation before them
// divided by s: an RMSNorm weight (in,), or a linear's output rows (weight (in, k) and bias).
void fold_scales_into_norm(const at::Tensor& norm_weight,
                           const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& s);
void fold_scales_into_linear(nn::LinearBase& previous,
                             const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& s);

struct AwqGroupReport {
  std::string name;  // "model.layers.3.self_attn.q_proj+k_proj+v_proj"
  int64_t rows = 0;  // calibration inputs searched on
  double alpha = 0, rtn_error = 0, awq_error = 0;
  std::string skipped;  // why the group was left alone ("" = scaled)
};

// check_awq_layer() for every linear awq_llama() would scale (before any work).
void check_awq_model(models::LlamaForCausalLM& model);
void check_scaling_model(models::LlamaForCausalLM& model, const std::string& method);

// A channel-scaling method's scales for a group sharing the input x (AWQ's search, SmoothQuant's
// formula), with its errors (AwqSearch::rtn_error: unscaled; awq_error: scaled).
using ScaleRule =
    std::function<AwqSearch(const std::vector<nn::FakeQuantLinear*>&, const at::Tensor&)>;

// Decoder layers in order, the calibration batches passing through the layers already scaled
// (with their fake quantization on, as gptq_llama does); inside a layer the four groups above in
// turn, each searched on inputs computed after the ones before it were folded. Groups whose
// members are not all fake-quantized (excluded layers) are left alone and reported. Runs without
// gradients in eval mode (restored after); `log` gets a line per decoder layer.
std::vector<AwqGroupReport> awq_llama(models::LlamaForCausalLM& model,
                                      const std::vector<CalibrationBatch>& batches,
                                      const AwqConfig& cfg,
                                      const std::function<void(const std::string&)>& log = {});

// awq_llama's walk with another scale rule; `method` names it in checks, errors and log lines.
std::vector<AwqGroupReport> scale_llama(models::LlamaForCausalLM& model,
                                        const std::vector<CalibrationBatch>& batches,
                                        int64_t max_tokens, const ScaleRule& rule,
                                        const std::string& method,
                                        const std::function<void(const std::string&)>& log = {});

}  // namespace qat::transforms
