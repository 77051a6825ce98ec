// SmoothQuant (Xiao et al., 2023, "SmoothQuant: Accurate and Efficient Post-Training Quantization
// for Large Language Models", arXiv:2211.10438), in the formats of this project.
//
// LLM activations have a few input channels with values 10-100x the rest; with int8 activations
// quantized per token those channels set every token's scale and the others round to a handful
// of levels. SmoothQuant moves the difficulty into the weights, which quantize easily per output
// channel: each input channel j of a group of linears that share an input is divided by
//   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)
// (max over the calibration tokens and over the group's weight rows; alpha the migration
// strength, 0.5 by default, the paper's choice for most models) and the weights' columns are
// multiplied by it: y = (W diag(s)) (diag(s)^-1 x) is the same float function. The division is
// folded into the operation before the linears exactly as AWQ folds its scales (qat/transforms/
// awq.h: RMSNorm weights for q/k/v and gate/up, v_proj's rows for o_proj without grouped-query
// attention, up_proj's rows for down_proj), so nothing is added at inference and the result
// exports like any fake-quant model (W8A8 compressed-tensors: `qat export --format ct --scheme
// w8a8`).
//
// The layers keep their fake quantization (int8 per-channel weights and int8 per-token dynamic
// activations for W8A8, or any weight format); each group's relative output error with the
// layers' own weight and activation fake quant, before and after smoothing, is reported.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "qat/transforms/awq.h"

namespace qat::transforms {

struct SmoothQuantConfig {
  double alpha = 0.5;         // migration strength in [0, 1]: 0 leaves the inputs alone
  int64_t max_tokens = 4096;  // calibration inputs per group (the first ones)
  void validate() const;
};

// s = max|X_j|^alpha / max|W_j|^(1-alpha) for linears that share the input x (rows, in), with
// the group's output error before and after (AwqSearch: rtn_error unscaled, awq_error scaled).
AwqSearch smoothquant_scales(const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& x,
                             const SmoothQuantConfig& cfg);

// Every decoder layer's groups smoothed and folded in turn (awq_llama's walk and folding).
std::vector<AwqGroupReport> smoothquant_llama(
    models::LlamaForCausalLM& model, const std::vector<CalibrationBatch>& batches,
    const SmoothQuantConfig& cfg, const std::function<void(const std::string&)>& log = {});

}  // namespace qat::transforms
