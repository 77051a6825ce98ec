#include "qat/fake_quant/observer.h"

#include <ATen/ATen.h>

namespace qat::fake_quant {

namespace {

using scheme::Format;

// x as [count, group_numel]: row g holds the elements of group g (copies only for per-axis).
at::Tensor rows_of_groups(const at::Tensor& x, const scheme::GroupLayout& l) {
  return x.reshape({l.numel / (l.count * l.inner), l.count, l.inner})
      .permute({1, 0, 2})
      .reshape({l.count, -1})
      .to(at::kFloat);
}

// k-th smallest along dim 1 for a fraction q in [0, 1] (nearest rank).
at::Tensor row_quantile(const at::Tensor& rows, double q) {
  const int64_t n = rows.size(1);
  // (the epsilon keeps 0.999 * 1000 from becoming 1000 through binary rounding)
  int64_t k = static_cast<int64_t>(std::ceil(q * static_cast<double>(n) - 1e-9));
  k = std::min<int64_t>(std::max<int64_t>(k, 1), n);
  return std::get<0>(at::kthvalue(rows, k, 1));
}

bool symmetric(const scheme::QuantSpec& spec) {
  return spec.format != Format::kUInt;
}

}  // namespace

RangeMethod range_method_from_name(const std::string& name) {
  if (name == "minmax" || name == "min_max") return RangeMethod::kMinMax;
  if (name == "percentile") return RangeMethod::kPercentile;
  if (name == "mse") return RangeMethod::kMse;
  TORCH_CHECK(false, "unknown range method '", name, "': expected minmax, percentile or mse");
}

std::string to_string(RangeMethod m) {
  switch (m) {
    case RangeMethod::kMinMax:
      return "minmax";
    case RangeMethod::kPercentile:
      return "percentile";
    case RangeMethod::kMse:
      return "mse";
  }
  return "?";
}

void RangeConfig::validate() const {
  TORCH_CHECK(percentile > 50.0 && percentile <= 100.0, "percentile must be in (50, 100], got ",
              percentile);
  TORCH_CHECK(mse_steps >= 1 && mse_steps <= 1000, "mse_steps must be in [1, 1000], got ",
              mse_steps);
  TORCH_CHECK(mse_min_ratio > 0.0 && mse_min_ratio <= 1.0, "mse_min_ratio must be in (0, 1], got ",
              mse_min_ratio);
}

std::pair<at::Tensor, at::Tensor> compute_range(const at::Tensor& x, const scheme::QuantSpec& spec,
                                                const RangeConfig& cfg) {
  cfg.validate();
  spec.validate_for(x.sizes());
  const at::Tensor xd = x.detach();
  if (cfg.method == RangeMethod::kMinMax || cfg.method == RangeMethod::kMse) {
    const at::Tensor st = ops::group_stats(xd, spec);  // [count, 4]
    at::Tensor lo = st.select(1, 0).clone(), hi = st.select(1, 1).clone();
    if (cfg.method == RangeMethod::kMinMax) return {lo, hi};
    // MSE search over shrink factors; ties keep the larger range (the first one tried).
    at::Tensor best_err, best_lo = lo.clone(), best_hi = hi.clone();
    const scheme::GroupLayout l = spec.layout(xd.sizes());
    for (int i = 0; i < cfg.mse_steps; ++i) {
      const double a =
          cfg.mse_steps == 1 ? 1.0 : 1.0 - (1.0 - cfg.mse_min_ratio) * i / (cfg.mse_steps - 1);
      const at::Tensor clo = lo * a, chi = hi * a;
      const ops::QParams qp = ops::qparams_from_range(clo, chi, spec, xd.sizes());
      const at::Tensor y = ops::fake_quantize(xd, spec, qp, false).y;
      const at::Tensor err =
          rows_of_groups((y.to(at::kFloat) - xd.to(at::kFloat)).square(), l).sum(1);
      if (!best_err.defined()) {
        best_err = err;
        continue;
      }
      const at::Tensor better = err < best_err;
      best_err = at::where(better, err, best_err);
      best_lo = at::where(better, clo, best_lo);
      best_hi = at::where(better, chi, best_hi);
    }
    return {best_lo, best_hi};
  }
  // Percentile.
  const scheme::GroupLayout l = spec.layout(xd.sizes());
  const at::Tensor rows = rows_of_groups(xd, l);
  const double q = cfg.percentile / 100.0;
  if (symmetric(spec)) {
    const at::Tensor a = row_quantile(rows.abs(), q);
    return {-a, a};
  }
  return {row_quantile(rows, 1.0 - q), row_quantile(rows, q)};
}

ops::QParams range_qparams(const at::Tensor& x, const scheme::QuantSpec& spec,
                           const RangeConfig& cfg) {
  if (spec.traits().fixed_block > 0 || spec.format == Format::kNf4) {
    TORCH_CHECK(cfg.method == RangeMethod::kMinMax, "format '", spec.traits().name,
                "' sets each block's range itself; range method must be minmax, got ",
                to_string(cfg.method));
    return ops::choose_qparams(x.detach(), spec);
  }
  if (cfg.method == RangeMethod::kMinMax) return ops::choose_qparams(x.detach(), spec);
  auto [lo, hi] = compute_range(x, spec, cfg);
  return ops::qparams_from_range(lo, hi, spec, x.sizes());
}

Observer::Observer(scheme::QuantSpec spec, RangeConfig cfg, Mode mode, double momentum)
    : spec_(spec), cfg_(cfg), mode_(mode), momentum_(momentum) {
  spec_.validate();
  cfg_.validate();
  TORCH_CHECK(spec_.traits().fixed_block == 0 && spec_.format != Format::kNf4,
              "a static observer needs a format with free scales (int, uint, fp8); '",
              spec_.traits().name, "' derives every block's scale from the block");
  TORCH_CHECK(momentum > 0.0 && momentum <= 1.0, "observer momentum must be in (0, 1], got ",
              momentum);
}

void Observer::update(const at::Tensor& x) {
  auto [lo, hi] = compute_range(x, spec_, cfg_);
  const std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  if (!lo_.defined()) {
    lo_ = lo;
    hi_ = hi;
    shape_ = shape;
    return;
  }
  TORCH_CHECK(lo.numel() == lo_.numel(), "observer: saw a tensor with ", lo.numel(),
              " groups after tensors with ", lo_.numel(), " groups (shape ", x.sizes(), ")");
  if (mode_ == Mode::kRunningMinMax) {
    lo_ = at::minimum(lo_, lo);
    hi_ = at::maximum(hi_, hi);
  } else {
    lo_ = lo_ * (1.0 - momentum_) + lo * momentum_;
    hi_ = hi_ * (1.0 - momentum_) + hi * momentum_;
  }
  shape_ = shape;
}

ops::QParams Observer::qparams() const {
  TORCH_CHECK(has_range(), "observer: no range yet; run calibration batches first");
  return ops::qparams_from_range(lo_, hi_, spec_, shape_);
}

void Observer::set_state(at::Tensor lo, at::Tensor hi, std::vector<int64_t> shape) {
  lo_ = std::move(lo);
  hi_ = std::move(hi);
  shape_ = std::move(shape);
}

}  // namespace qat::fake_quant
