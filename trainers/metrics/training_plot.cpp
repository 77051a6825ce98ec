#include "trainers/metrics/training_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "trainers/metrics/format.h"

namespace qat::train {

namespace {

// Colours: the matplotlib "tab10" blue / orange / green, so the chart reads like a familiar one.
constexpr Rgb kBackground{255, 255, 255};
constexpr Rgb kAxis{60, 60, 60};
constexpr Rgb kText{30, 30, 30};
constexpr Rgb kGrid{222, 222, 222};
constexpr Rgb kLegendBorder{190, 190, 190};
constexpr Rgb kTrainRaw{174, 199, 232};
constexpr Rgb kTrainEma{31, 119, 180};
constexpr Rgb kEval{255, 127, 14};
constexpr Rgb kLr{44, 160, 44};
constexpr Rgb kMuted{130, 130, 130};

constexpr int kMinWidth = 320;  // below this the tick labels overlap
constexpr int kMinHeight = 200;
constexpr int kTickLength = 4;
constexpr double kPad = 0.05;  // y margin around the data, so extremes stay off the frame

struct Point {
  double x;
  double y;  // NaN: a gap (a skipped value)
};

double nice_step(double raw) {
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / mag;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * mag;
}

// A value-to-pixel map; `log` maps log10(v) linearly.
struct Scale {
  double lo, hi;
  bool log;
  double pix_lo, pix_hi;
  double map(double v) const {
    const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                         : (v - lo) / (hi - lo);
    return pix_lo + t * (pix_hi - pix_lo);
  }
};

struct Axis {
  double lo, hi;
  std::vector<double> ticks;
  double step;  // linear tick step; 0 on a log axis
  bool log;
};

// Linear axis over data in [dmin, dmax] plus a kPad margin (not below 0 for non-negative data),
// or the caller's fixed ends; ticks are the 1-2-5 multiples inside.
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

// Log axis over positive data, padded by kPad of its decades.
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
  auto ticks_with = [&](std::initializer_list<double> mantissas) {
    std::vector<double> v;
    for (int k = static_cast<int>(std::floor(llo)); k <= static_cast<int>(std::ceil(lhi)); ++k) {
      for (double m : mantissas) {
        const double t = m * std::pow(10.0, k);
        if (t >= lo && t <= hi) v.push_back(t);
      }
    }
    return v;
  };
  // 1-2-5 per decade; over many decades powers of ten only; within a factor of ~5, every digit.
  std::vector<double> ticks = ticks_with({1, 2, 5});
  if (ticks.size() > 10) ticks = ticks_with({1});
  if (ticks.size() < 3) ticks = ticks_with({1, 2, 3, 4, 5, 6, 7, 8, 9});
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
  if (axis.log || a < 1e-3 || a >= 1e5) {
    std::snprintf(buf, sizeof(buf), "%g", v);
    return buf;
  }
  const int decimals =
      std::clamp(static_cast<int>(-std::floor(std::log10(axis.step) + 1e-9)), 0, 6);
  return format_fixed(v, decimals);
}

std::string x_label(double v, double step) {
  if (step >= 1000) {
    const int decimals =
        std::clamp(static_cast<int>(-std::floor(std::log10(step / 1000) + 1e-9)), 0, 3);
    return format_fixed(v / 1000, decimals) + "k";
  }
  return format_fixed(v, 0);
}

// Draws a polyline that breaks at NaN; a point with no finite neighbour is drawn as a dot.
void draw_series(Canvas& c, const std::vector<Point>& pts, const Scale& sx, const Scale& sy,
                 Rgb color, int thickness, double marker_radius) {
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (std::isnan(pts[i].y)) continue;
    const double px = sx.map(pts[i].x), py = sy.map(pts[i].y);
    const bool next = i + 1 < pts.size() && !std::isnan(pts[i + 1].y);
    const bool prev = i > 0 && !std::isnan(pts[i - 1].y);
    if (next) c.line(px, py, sx.map(pts[i + 1].x), sy.map(pts[i + 1].y), color, thickness);
    if (!next && !prev && marker_radius <= 0) c.disc(px, py, thickness, color);
  }
  if (marker_radius > 0) {
    for (const Point& p : pts) {
      if (!std::isnan(p.y)) c.disc(sx.map(p.x), sy.map(p.y), marker_radius, color);
    }
  }
}

// TensorBoard's smoothing: ema = s * ema + (1 - s) * y, divided by (1 - s^n) so the first
// points are not pulled towards 0. Gaps are skipped rather than broken.
std::vector<Point> ema_series(const std::vector<Point>& pts, double s) {
  std::vector<Point> out;
  double acc = 0, weight = 1;
  for (const Point& p : pts) {
    if (std::isnan(p.y)) continue;
    acc = s * acc + (1 - s) * p.y;
    weight *= s;
    out.push_back({p.x, acc / (1 - weight)});
  }
  return out;
}

std::size_t count_finite(const std::vector<Point>& pts) {
  return static_cast<std::size_t>(
      std::count_if(pts.begin(), pts.end(), [](const Point& p) { return !std::isnan(p.y); }));
}

void finite_range(const std::vector<Point>& pts, double& lo, double& hi) {
  for (const Point& p : pts) {
    if (std::isnan(p.y)) continue;
    lo = std::min(lo, p.y);
    hi = std::max(hi, p.y);
  }
}

void draw_frame(Canvas& c, const PixelRect& r) {
  c.reset_clip();
  c.fill_rect({r.left, r.top, r.right, r.top}, kAxis);
  c.fill_rect({r.left, r.bottom, r.right, r.bottom}, kAxis);
  c.fill_rect({r.left, r.top, r.left, r.bottom}, kAxis);
  c.fill_rect({r.right, r.top, r.right, r.bottom}, kAxis);
}

// Grid lines and tick labels of a y axis.
void draw_y_axis(Canvas& c, const PixelRect& r, const Axis& axis, const Scale& sy) {
  for (double v : axis.ticks) {
    const int y = static_cast<int>(std::lround(sy.map(v)));
    c.hline_dashed(r.left + 1, r.right - 1, y, kGrid, 4);
    c.fill_rect({r.left - kTickLength, y, r.left - 1, y}, kAxis);
    const std::string label = y_label(v, axis);
    c.text(r.left - kTickLength - 3 - Canvas::text_width(label), y - 3, label, kText);
  }
}

void draw_x_grid(Canvas& c, const PixelRect& r, const AxisTicks& ticks, const Scale& sx) {
  for (double v : ticks.values) {
    const int x = static_cast<int>(std::lround(sx.map(v)));
    c.vline_dashed(x, r.top + 1, r.bottom - 1, kGrid, 4);
  }
}

struct LegendEntry {
  std::string label;
  Rgb color;
  int thickness;
  bool marker;
};

void draw_legend(Canvas& c, const PixelRect& panel, const std::vector<LegendEntry>& entries) {
  if (entries.empty()) return;
  int text_w = 0;
  for (const auto& e : entries) text_w = std::max(text_w, Canvas::text_width(e.label));
  constexpr int kRow = 13, kSwatch = 20;
  const int w = 8 + kSwatch + 6 + text_w + 8;
  const int h = 6 + static_cast<int>(entries.size()) * kRow + 2;
  const PixelRect box{panel.right - 10 - w, panel.top + 10, panel.right - 10, panel.top + 10 + h};
  c.reset_clip();
  c.fill_rect(box, kLegendBorder);
  c.fill_rect({box.left + 1, box.top + 1, box.right - 1, box.bottom - 1}, kBackground);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    const int y = box.top + 6 + static_cast<int>(i) * kRow;
    const int sx = box.left + 8;
    c.line(sx, y + 3, sx + kSwatch, y + 3, e.color, e.thickness);
    if (e.marker) c.disc(sx + kSwatch / 2.0, y + 3, 3.5, e.color);
    c.text(sx + kSwatch + 6, y, e.label, kText);
  }
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

namespace {

void check_options(const PlotOptions& opt) {
  if (opt.width < kMinWidth || opt.height < kMinHeight) {
    throw std::invalid_argument("write_training_plot: image must be at least " +
                                std::to_string(kMinWidth) + "x" + std::to_string(kMinHeight) +
                                ", got " + std::to_string(opt.width) + "x" +
                                std::to_string(opt.height));
  }
  if (!std::isnan(opt.y_min) && !std::isnan(opt.y_max) && !(opt.y_min < opt.y_max)) {
    throw std::invalid_argument("write_training_plot: y_min must be < y_max, got " +
                                std::to_string(opt.y_min) + " and " + std::to_string(opt.y_max));
  }
  if (opt.log_y && (opt.y_min <= 0 || opt.y_max <= 0)) {
    throw std::invalid_argument("write_training_plot: a log-scale y range must be positive");
  }
  if (!std::isnan(opt.smoothing) && !(opt.smoothing >= 0 && opt.smoothing < 1)) {
    throw std::invalid_argument("write_training_plot: smoothing must be in [0, 1), got " +
                                std::to_string(opt.smoothing));
  }
}

struct Series {
  std::vector<Point> train, eval, lr;
};

// The series, in step order; values that cannot be drawn become gaps.
Series collect_series(const std::vector<Record>& records, const PlotOptions& opt) {
  Series s;
  for (const Record& r : records) {
    const double x = static_cast<double>(r.step);
    if (r.kind == opt.train_kind || r.kind == opt.eval_kind) {
      double y = r.number(opt.loss_field);
      if (!std::isfinite(y) || (opt.log_y && y <= 0)) y = std::nan("");
      (r.kind == opt.train_kind ? s.train : s.eval).push_back({x, y});
    }
    if (r.kind == opt.train_kind && opt.lr_panel) {
      const double v = r.number(opt.lr_field);
      if (r.fields.contains(opt.lr_field)) s.lr.push_back({x, std::isfinite(v) ? v : std::nan("")});
    }
  }
  for (auto* v : {&s.train, &s.eval, &s.lr}) {
    std::stable_sort(v->begin(), v->end(),
                     [](const Point& a, const Point& b) { return a.x < b.x; });
  }
  return s;
}

// Where things go: the loss panel, the optional lr panel below it, the outer margins.
struct Layout {
  int left = 0, right = 0, top = 0, bottom = 0;
  PixelRect loss_panel, lr_rect;
  bool has_lr = false;
  const PixelRect& bottom_panel() const { return has_lr ? lr_rect : loss_panel; }
};

Layout plot_layout(const PlotOptions& opt, bool has_lr) {
  Layout l;
  l.left = 78;
  l.right = opt.width - 18;
  l.top = 44;
  l.bottom = opt.height - 46;
  l.has_lr = has_lr;
  l.loss_panel = {l.left, l.top, l.right, l.bottom};
  if (has_lr) {
    const int lr_h = std::max(50, (l.bottom - l.top) / 4);
    l.lr_rect = {l.left, l.bottom - lr_h + 1, l.right, l.bottom};
    l.loss_panel.bottom = l.lr_rect.top - 26;
  }
  return l;
}

// x axis: integer steps over every series.
AxisTicks x_ticks(const Series& s, const Layout& l) {
  double xmin = INFINITY, xmax = -INFINITY;
  for (const auto* v : {&s.train, &s.eval, &s.lr}) {
    for (const Point& p : *v) {
      if (std::isnan(p.y)) continue;
      xmin = std::min(xmin, p.x);
      xmax = std::max(xmax, p.x);
    }
  }
  const int x_target = std::max(2, (l.right - l.left) / 110);
  return nice_ticks(xmin, xmax, x_target, 1.0);
}

// The loss curves (raw train, its EMA, eval) inside the loss panel; returns the legend.
std::vector<LegendEntry> draw_losses(Canvas& c, const Series& s, const PlotOptions& opt,
                                     const PlotResult& result, const Scale& sx, const Scale& sy) {
  std::vector<LegendEntry> legend;
  double smoothing = opt.smoothing;
  if (std::isnan(smoothing)) {
    // An averaging window of ~1/50 of the run: smooth enough to read the trend, short enough
    // not to lag visibly behind a fast initial drop.
    smoothing = std::clamp(1.0 - 50.0 / static_cast<double>(result.train_points), 0.0, 0.98);
  }
  const bool ema = smoothing > 0 && result.train_points >= 3;
  if (result.train_points > 0) {
    draw_series(c, s.train, sx, sy, ema ? kTrainRaw : kTrainEma, ema ? 1 : 2, 0);
    legend.push_back({"train loss", ema ? kTrainRaw : kTrainEma, ema ? 1 : 2, false});
  }
  if (ema) {
    draw_series(c, ema_series(s.train, smoothing), sx, sy, kTrainEma, 2, 0);
    legend.push_back({"train loss (EMA)", kTrainEma, 2, false});
  }
  if (result.eval_points > 0) {
    draw_series(c, s.eval, sx, sy, kEval, 2, 3.5);
    legend.push_back({"eval loss", kEval, 2, true});
  }
  return legend;
}

// The learning-rate panel under the loss panel.
void draw_lr_panel(Canvas& c, const Series& s, const Layout& l, const AxisTicks& xt,
                   const Scale& sx) {
  const PixelRect& r = l.lr_rect;
  double lmin = INFINITY, lmax = -INFINITY;
  finite_range(s.lr, lmin, lmax);
  const Axis la = linear_axis(lmin, lmax, std::nan(""), std::nan(""), std::max(3, r.height() / 30));
  const Scale sl{la.lo, la.hi, false, static_cast<double>(r.bottom), static_cast<double>(r.top)};
  draw_x_grid(c, r, xt, sx);
  draw_y_axis(c, r, la, sl);
  c.set_clip({r.left + 1, r.top + 1, r.right - 1, r.bottom - 1});
  draw_series(c, s.lr, sx, sl, kLr, 2, 0);
  draw_frame(c, r);
  c.text(l.left, r.top - 12, "learning rate", kText);
}

// x ticks and labels under the bottom panel; tick marks on every panel.
void draw_x_labels(Canvas& c, const Layout& l, const AxisTicks& xt, const Scale& sx) {
  for (double v : xt.values) {
    const int x = static_cast<int>(std::lround(sx.map(v)));
    for (const PixelRect* r : {&l.loss_panel, l.has_lr ? &l.lr_rect : nullptr}) {
      if (r) c.fill_rect({x, r->bottom + 1, x, r->bottom + kTickLength}, kAxis);
    }
    const std::string label = x_label(v, xt.step);
    c.text(x - Canvas::text_width(label) / 2, l.bottom_panel().bottom + kTickLength + 4, label,
           kText);
  }
}

}  // namespace

PlotResult write_training_plot(const std::vector<Record>& records, const std::string& png_path,
                               const PlotOptions& opt) {
  check_options(opt);
  const Series s = collect_series(records, opt);
  PlotResult result;
  result.train_points = count_finite(s.train);
  result.eval_points = count_finite(s.eval);
  result.lr_points = count_finite(s.lr);
  const bool has_loss = result.train_points + result.eval_points > 0;
  const Layout l = plot_layout(opt, has_loss && result.lr_points > 0);
  const PixelRect& loss_panel = l.loss_panel;
  result.loss_panel = loss_panel;

  // Title, x title and loss title; an empty frame with a message when there is nothing to draw.
  Canvas c(opt.width, opt.height, kBackground);
  c.text((opt.width - Canvas::text_width(opt.title, 2)) / 2, 12, opt.title, kText, 2);
  const std::string x_title = "step";
  c.text((l.left + l.right - Canvas::text_width(x_title)) / 2, l.bottom + 24, x_title, kText);
  c.text(l.left, loss_panel.top - 12, opt.log_y ? "loss (log scale)" : "loss", kText);
  if (!has_loss) {
    const std::string msg = "no loss values to plot";
    c.text((l.left + l.right - Canvas::text_width(msg, 2)) / 2,
           (loss_panel.top + loss_panel.bottom - Canvas::text_height(2)) / 2, msg, kMuted, 2);
    draw_frame(c, loss_panel);
    c.write_png(png_path);
    return result;
  }

  const AxisTicks xt = x_ticks(s, l);
  const Scale sx{xt.lo, xt.hi, false, static_cast<double>(l.left + kPlotInset),
                 static_cast<double>(l.right - kPlotInset)};
  result.x_min = xt.lo;
  result.x_max = xt.hi;
  double ymin = INFINITY, ymax = -INFINITY;
  finite_range(s.train, ymin, ymax);
  finite_range(s.eval, ymin, ymax);
  const int y_target = std::max(2, loss_panel.height() / 60);
  const Axis ya = opt.log_y ? log_axis(ymin, ymax, opt.y_min, opt.y_max)
                            : linear_axis(ymin, ymax, opt.y_min, opt.y_max, y_target);
  const Scale sy{ya.lo, ya.hi, ya.log, static_cast<double>(loss_panel.bottom),
                 static_cast<double>(loss_panel.top)};
  result.y_min = ya.lo;
  result.y_max = ya.hi;
  result.log_y = ya.log;

  draw_x_grid(c, loss_panel, xt, sx);
  draw_y_axis(c, loss_panel, ya, sy);
  c.set_clip(
      {loss_panel.left + 1, loss_panel.top + 1, loss_panel.right - 1, loss_panel.bottom - 1});
  const std::vector<LegendEntry> legend = draw_losses(c, s, opt, result, sx, sy);
  draw_frame(c, loss_panel);
  if (l.has_lr) draw_lr_panel(c, s, l, xt, sx);
  draw_x_labels(c, l, xt, sx);
  draw_legend(c, loss_panel, legend);
  c.write_png(png_path);
  return result;
}

}  // namespace qat::train
