#include "trainers/metrics/plot_axes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <stdexcept>

#include "trainers/metrics/format.h"

namespace qat::train {

namespace {

constexpr double kPad = 0.05;  // y margin around the data, so extremes stay off the frame

double nice_step(double raw) {
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / mag;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * mag;
}

// The values m * 10^k (m from `mantissas`) inside [lo, hi], for the decades llo..lhi spans.
std::vector<double> decade_ticks(double llo, double lhi, std::initializer_list<double> mantissas) {
  const double lo = std::pow(10.0, llo), hi = std::pow(10.0, lhi);
  std::vector<double> v;
  for (int k = static_cast<int>(std::floor(llo)); k <= static_cast<int>(std::ceil(lhi)); ++k) {
    for (double m : mantissas) {
      const double t = m * std::pow(10.0, k);
      if (t >= lo && t <= hi) v.push_back(t);
    }
  }
  return v;
}

}  // namespace

double PlotResult::x_pixel(double step) const {
  const double lo = loss_panel.left + kPlotInset, hi = loss_panel.right - kPlotInset;
  return lo + (step - x_min) / (x_max - x_min) * (hi - lo);
}

double PlotResult::y_pixel(double loss) const {
  const double t =
      log_y ? (std::log10(loss) - std::log10(y_min)) / (std::log10(y_max) - std::log10(y_min))
            : (loss - y_min) / (y_max - y_min);
  return loss_panel.bottom + t * (loss_panel.top - loss_panel.bottom);
}

AxisTicks nice_ticks(double lo, double hi, int target, double min_step) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || target < 1) {
    throw std::invalid_argument("nice_ticks: need a finite range and target >= 1");
  }
  if (hi < lo) std::swap(lo, hi);
  if (!(hi > lo)) {
    // A constant series still gets a range around it (the line is drawn mid-panel).
    const double pad = lo != 0 ? 0.1 * std::fabs(lo) : 1.0;
    lo -= pad;
    hi += pad;
  }
  AxisTicks t;
  t.step = std::max(nice_step((hi - lo) / target), min_step);
  const double k0 = std::floor(lo / t.step + 1e-9), k1 = std::ceil(hi / t.step - 1e-9);
  t.lo = k0 * t.step;
  t.hi = k1 * t.step;
  for (double k = k0; k <= k1 + 0.5; k += 1) t.values.push_back(k * t.step);
  return t;
}

namespace plot {

double Scale::map(double v) const {
  const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                       : (v - lo) / (hi - lo);
  return pix_lo + t * (pix_hi - pix_lo);
}

Axis linear_axis(double dmin, double dmax, double fixed_lo, double fixed_hi, int target) {
  double lo = std::isnan(fixed_lo) ? dmin : fixed_lo;
  double hi = std::isnan(fixed_hi) ? dmax : fixed_hi;
  if (hi > lo) {
    const double pad = kPad * (hi - lo);
    if (std::isnan(fixed_lo)) lo = lo >= 0 ? std::max(0.0, lo - pad) : lo - pad;
    if (std::isnan(fixed_hi)) hi += pad;
  } else {
    // A constant series (or a fixed end beyond the data): a range centred on it.
    const double pad = lo != 0 ? 0.1 * std::fabs(lo) : 1.0;
    lo -= pad;
    hi = lo + 2 * pad;
  }
  const AxisTicks t = nice_ticks(lo, hi, target);
  Axis axis{lo, hi, {}, t.step, false};
  const double eps = 1e-9 * t.step;
  for (double v : t.values) {
    if (v >= lo - eps && v <= hi + eps) axis.ticks.push_back(v);
  }
  return axis;
}

Axis log_axis(double dmin, double dmax, double fixed_lo, double fixed_hi) {
  double llo = std::log10(std::isnan(fixed_lo) ? dmin : fixed_lo);
  double lhi = std::log10(std::isnan(fixed_hi) ? dmax : fixed_hi);
  if (lhi - llo < 1e-9) {
    llo -= 0.05;
    lhi += 0.05;
  }
  const double pad = kPad * (lhi - llo);
  if (std::isnan(fixed_lo)) llo -= pad;
  if (std::isnan(fixed_hi)) lhi += pad;
  const double lo = std::pow(10.0, llo), hi = std::pow(10.0, lhi);
  std::vector<double> ticks = decade_ticks(llo, lhi, {1, 2, 5});
  if (ticks.size() > 10) ticks = decade_ticks(llo, lhi, {1});
  if (ticks.size() < 3) ticks = decade_ticks(llo, lhi, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  if (ticks.size() < 3 || ticks.size() > 12) {
    ticks.clear();
    for (double v : nice_ticks(lo, hi, 5).values) {
      if (v >= lo && v <= hi && v > 0) ticks.push_back(v);
    }
  }
  return {lo, hi, ticks, 0, true};
}

std::string y_label(double v, const Axis& axis) {
  if (v == 0) return "0";
  char buf[32];
  const double a = std::fabs(v);
  if (axis.log) {
    std::snprintf(buf, sizeof(buf), "%g", v);
    return buf;
  }
  if (a < 1e-3 || a >= 1e5) {
    // Scientific with the digits the step needs, trailing zeros dropped: "1e-04", "5e-05",
    // "1.5e-05" on one axis (%g would mix "0.0001" and "5e-05").
    const int decimals = std::clamp(static_cast<int>(std::floor(std::log10(a) + 1e-9) -
                                                     std::floor(std::log10(axis.step) + 1e-9)),
                                    0, 6);
    std::string s = format_scientific(v, decimals);
    const std::size_t e = s.find('e');
    std::size_t end = e;
    while (end > 0 && s[end - 1] == '0') --end;
    if (end > 0 && s[end - 1] == '.') --end;
    return s.substr(0, end) + s.substr(e);
  }
  const int decimals =
      std::clamp(static_cast<int>(-std::floor(std::log10(axis.step) + 1e-9)), 0, 6);
  return format_fixed(v, decimals);
}

std::string x_label(double v, double step) {
  if (v == 0) return "0";
  if (step >= 1000) {
    const int decimals =
        std::clamp(static_cast<int>(-std::floor(std::log10(step / 1000) + 1e-9)), 0, 3);
    return format_fixed(v / 1000, decimals) + "k";
  }
  return format_fixed(v, 0);
}

}  // namespace plot

}  // namespace qat::train
