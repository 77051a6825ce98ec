// The training-curve image of a run (loss.png next to metrics.jsonl): training loss vs step (the
// raw values in a light line, an exponential moving average in a strong one) and eval loss
// (markers joined by a line), with 1-2-5 ticks, axis titles and a legend; below it, a
// learning-rate panel when the records carry one. Drawn with cairo (anti-aliased lines, a real
// font through fontconfig), so it works on a headless training box; a path ending in .svg gives
// an SVG instead of a PNG.
//
// Plots are optional at build time (CMake option QAT_PLOTS, AUTO by default): a build without
// cairo still declares everything here, training_plots_available() is false and
// write_training_plot throws. metrics.jsonl does not depend on it.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "trainers/metrics/metrics_log.h"

namespace qat::train {

// False when this build has no plotting library (cairo was not found at configure time, or
// QAT_PLOTS=OFF): the caller should skip the plot and say so rather than fail a finished run.
bool training_plots_available();

struct PlotOptions {
  int width = 960;
  int height = 540;
  std::string title = "training loss";
  std::string loss_field = "loss";  // read from records of kind train_kind and eval_kind
  std::string lr_field = "lr";      // read from train_kind records
  std::string train_kind = "train";
  std::string eval_kind = "eval";
  bool log_y = false;  // log-scale loss axis (non-positive values are skipped)
  // Weight of the history in the EMA line, TensorBoard-style and debiased; NaN = chosen from the
  // number of points (a window of ~1/50 of the run); 0 = no EMA line.
  double smoothing = std::nan("");
  bool lr_panel = true;         // draw the learning-rate panel if any record has lr_field
  double y_min = std::nan("");  // fixed loss axis range (NaN = from the data)
  double y_max = std::nan("");
};

// An inclusive pixel rectangle (x right, y down): a frame drawn on it covers the pixel columns
// `left` and `right` and the rows `top` and `bottom`.
struct PixelRect {
  int left = 0, top = 0, right = -1, bottom = -1;
  int width() const { return right - left + 1; }
  int height() const { return bottom - top + 1; }
};

struct PlotResult {
  std::size_t train_points = 0;  // finite values drawn
  std::size_t eval_points = 0;
  std::size_t lr_points = 0;
  PixelRect loss_panel;         // frame of the loss axes in the image
  double x_min = 0, x_max = 0;  // loss axes' ranges in data units (x: widened to ticks)
  double y_min = 0, y_max = 0;
  bool log_y = false;

  // Where a step / a loss value is drawn: the pixel column / row whose centre the line passes
  // through (not rounded). Steps x_min and x_max sit kPlotInset pixels inside the frame, so end
  // points and markers stay visible.
  double x_pixel(double step) const;
  double y_pixel(double loss) const;
};

constexpr int kPlotInset = 8;

// Draws the chart and writes it to `path`: an 8-bit RGB PNG, or an SVG when the path ends in
// ".svg" (any case). Non-finite values are skipped (a line breaks there). With no finite loss
// value at all (an empty record list, a run that never logged) the image is empty axes saying
// "no loss values to plot" and the counts are 0. Throws std::invalid_argument for a size below
// 320x200 or an invalid y range or smoothing, std::runtime_error if the file cannot be written
// or this build has no plots (training_plots_available() is false).
PlotResult write_training_plot(const std::vector<Record>& records, const std::string& path,
                               const PlotOptions& options = {});

// Tick values for an axis over [lo, hi]: multiples of a 1-2-5 step (at least `min_step`) giving
// about `target` ticks, and the range widened to the outer ticks. Exposed for tests.
struct AxisTicks {
  double lo = 0, hi = 1;
  double step = 1;
  std::vector<double> values;
};
AxisTicks nice_ticks(double lo, double hi, int target, double min_step = 0);

}  // namespace qat::train
