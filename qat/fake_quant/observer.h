// Range setting: which [lo, hi] each group quantizes over.
//
//   min-max     the group's own min and max (no clipping)
//   percentile  the p-th percentile of |x| (symmetric) or the (100-p)th/p-th percentiles of x
//               (asymmetric): clips rare outliers
//   mse         searches a grid of shrink factors a in [mse_min_ratio, 1] of the min-max range and
//               keeps, per group, the one with the least squared fake-quant error
//
// An Observer keeps a static range across calls (calibration): the running min/max of all
// batches it saw, or an exponential moving average of the per-batch ranges.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>

#include "ops/quantize.h"

namespace qat::fake_quant {

enum class RangeMethod { kMinMax, kPercentile, kMse };
RangeMethod range_method_from_name(const std::string& name);
std::string to_string(RangeMethod m);

struct RangeConfig {
  RangeMethod method = RangeMethod::kMinMax;
  double percentile = 99.99;   // kPercentile, in (50, 100]
  int mse_steps = 20;          // kMse: grid size
  double mse_min_ratio = 0.5;  // kMse: smallest shrink factor tried
  void validate() const;
};

// Per-group [lo, hi] (float32 tensors with layout(x).count elements) for x under spec.
std::pair<at::Tensor, at::Tensor> compute_range(const at::Tensor& x, const scheme::QuantSpec& spec,
                                                const RangeConfig& cfg);

// Quantization parameters for x from its range under cfg (dynamic range setting). GGUF formats
// always use their own per-block rule; NF4 uses absmax blocks (min-max only).
ops::QParams range_qparams(const at::Tensor& x, const scheme::QuantSpec& spec,
                           const RangeConfig& cfg);

class Observer {
 public:
  enum class Mode { kRunningMinMax, kMovingAverage };
  Observer(scheme::QuantSpec spec, RangeConfig cfg, Mode mode, double momentum = 0.01);

  // Folds x's per-group range into the state.
  void update(const at::Tensor& x);
  bool has_range() const { return lo_.defined(); }
  // Parameters from the observed range for tensors shaped like the observed ones.
  ops::QParams qparams() const;

  // State for checkpoints: lo and hi per group.
  const at::Tensor& lo() const { return lo_; }
  const at::Tensor& hi() const { return hi_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  void set_state(at::Tensor lo, at::Tensor hi, std::vector<int64_t> shape);

 private:
  scheme::QuantSpec spec_;
  RangeConfig cfg_;
  Mode mode_;
  double momentum_;
  at::Tensor lo_, hi_;
  std::vector<int64_t> shape_;
};

}  // namespace qat::fake_quant
