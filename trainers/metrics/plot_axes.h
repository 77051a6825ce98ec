// Axis ranges, ticks and tick labels of the training plot (trainers/metrics/training_plot.h):
// the numbers only, no drawing, so they build and are tested without a plotting library.
#pragma once

#include <string>
#include <vector>

#include "trainers/metrics/training_plot.h"

namespace qat::train::plot {

// A value-to-pixel map; `log` maps log10(v) linearly.
struct Scale {
  double lo, hi;
  bool log;
  double pix_lo, pix_hi;
  double map(double v) const;
};

struct Axis {
  double lo, hi;
  std::vector<double> ticks;
  double step;  // linear tick step; 0 on a log axis
  bool log;
};

// Linear axis over data in [dmin, dmax] plus a 5% margin (not below 0 for non-negative data), or
// the caller's fixed ends (NaN: from the data); ticks are the 1-2-5 multiples inside.
Axis linear_axis(double dmin, double dmax, double fixed_lo, double fixed_hi, int target);

// Log axis over positive data, padded by 5% of its decades: 1-2-5 ticks per decade, powers of
// ten only over many decades, every digit within a factor of ~5.
Axis log_axis(double dmin, double dmax, double fixed_lo, double fixed_hi);

// Tick labels: y with as many decimals as the tick step needs (%g on a log axis, scientific for
// very small or large values); x (steps) as integers, or thousands ("1.5k") for steps of 1000 and
// up.
std::string y_label(double v, const Axis& axis);
std::string x_label(double v, double step);

}  // namespace qat::train::plot
