// GPTQ: post-training rounding of linear weights that moves each column's rounding error onto
// the columns not rounded yet (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization
// for Generative Pre-trained Transformers", arXiv:2210.17323), in the formats of this project.
//
// A layer y = W x seen on n calibration inputs x (the rows of X) has, for a rounded weight Q,
// the output error
//
//   E(Q) = (1/n) sum_x ||(W - Q) x||^2 = tr((W - Q) H (W - Q)^T) / 2,     H = (2/n) X^T X.
//
// Round to nearest (RTN) ignores H. GPTQ rounds column j, then updates the columns k > j to
// compensate, using U, the upper Cholesky factor of H^-1 (H^-1 = U^T U):
//
//   q_j  = round(w_j)                      (the format's own rounding, its scales fixed)
//   e    = (w_j - q_j) / U[j, j]
//   w_k -= e * U[j, k]                     for every k > j
//
// Columns are taken in blocks of `block_size`; inside a block the update is applied column by
// column, to the rest of the weight once per block (the paper's lazy batch; same result). With
// `act_order` the columns are taken by decreasing H_jj instead of left to right.
//
// What is trained is what is deployed, here too: the result is a float weight W' whose fake
// quantization (what `qat eval`, convert() and export compute) is GPTQ's rounding, bit for bit
// (checked after each layer). With min-max scales recomputed from the weight (scale_mode
// dynamic) that takes a constraint: the elements that set a group's parameters keep their values
// (the first element of largest |x| for int, fp8, nf4, Q8_0, Q4_0, Q5_0; the first min and max
// for uint and Q4_1/Q5_1), and the other elements are clamped strictly inside the range those
// define, so the group's scale, zero point or GGUF block d are those of the original weight. The
// kept elements are rounded to nearest; a group's other elements follow GPTQ. With static
// scales (calibrated observers) the scales are fixed state and nothing is clamped.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "qat/models/llama.h"
#include "qat/nn/fake_quant_linear.h"

namespace qat::transforms {

struct GptqConfig {
  double damp = 0.01;  // added to H's diagonal, as a fraction of its mean (the paper's lambda)
  int64_t block_size = 128;  // columns rounded between two updates of the rest of the weight
  // Round the columns by decreasing H_jj (the paper's "act order"). The scales stay those of the
  // original weight and its groups, so the stored format is the same either way (no g_idx).
  bool act_order = true;
  void validate() const;
};

// Accumulates H = (2/n) X^T X over a layer's inputs, in float32 on the inputs' device.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t in_features);
  // x: (..., in_features). `keep` (bool, x's shape without the last dimension; may be undefined)
  // selects the rows that count (packed sequences: not the padding).
  void add(const at::Tensor& x, const at::Tensor& keep = {});
  int64_t rows() const { return rows_; }
  at::Tensor hessian() const;  // (in, in); zeros before the first row

 private:
  int64_t in_features_;
  at::Tensor sum_;  // X^T X
  int64_t rows_ = 0;
};

struct GptqLayerReport {
  std::string name;
  int64_t rows = 0;       // calibration inputs (tokens) behind the Hessian
  double rtn_error = 0;   // E(RTN(W)) / E(0): output error of round to nearest, relative
  double gptq_error = 0;  // E(W') / E(0) for GPTQ's rounding
  double damp = 0;        // the damping used (the config's, raised tenfold while H + damp was
                          // not positive definite)
};

// Throws unless gptq_layer() can round this layer; the message names it and says what to change.
// Needs an active weight quantizer with min-max scales per call (scale_mode dynamic, range
// minmax) or static (calibrated) scales; not learnable scales (LSQ: they move with the weight),
// not the k-quants (a super-block's scales come from a search over all its values, so no element
// can move without changing them), not 2:4 sparsity.
void check_gptq_layer(const nn::FakeQuantLinear& layer, const std::string& name);

// Rounds `layer`'s weight with GPTQ against `hessian` (in, in), in place (see the top of this
// file).
GptqLayerReport gptq_layer(nn::FakeQuantLinear& layer, const at::Tensor& hessian,
                           const GptqConfig& cfg, const std::string& name = "linear");

struct CalibrationBatch {
  at::Tensor tokens;                           // (B, T) int64
  std::optional<models::PackedInputs> packed;  // set when the rows are packed documents
};

// The paper's sequential procedure over a Llama model: decoder layers in order, the calibration
// batches passing through the layers already rounded; inside a layer, the linears that share an
// input (q/k/v, then o, then gate/up, then down) are rounded in turn, each on inputs computed with
// the ones before it rounded. Rounds every FakeQuantLinear with a weight quantizer in the decoder
// layers (each must pass check_gptq_layer); the rest (lm_head, dense layers) is left alone. Runs
// without gradients in eval mode (restored after). `log`, when set, gets a line per decoder layer.
// check_gptq_layer() for every linear gptq_llama() would round (before any work).
void check_gptq_model(models::LlamaForCausalLM& model);

std::vector<GptqLayerReport> gptq_llama(models::LlamaForCausalLM& model,
                                        const std::vector<CalibrationBatch>& batches,
                                        const GptqConfig& cfg,
                                        const std::function<void(const std::string&)>& log = {});

}  // namespace qat::transforms
