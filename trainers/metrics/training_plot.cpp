// write_training_plot with cairo: an image (PNG) or SVG surface, anti-aliased strokes, text in the
// fontconfig "sans-serif" face (DejaVu Sans on Debian). Built only where CMake found cairo;
// training_plot_off.cpp stands in elsewhere.
#include "trainers/metrics/training_plot.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>
#include <stdexcept>

#include "trainers/metrics/plot_axes.h"

namespace qat::train {

namespace {

using plot::Axis;
using plot::Scale;

struct Colour {
  int r, g, b;
};

// Colours: the matplotlib "tab10" blue / orange / green, so the chart reads like a familiar one.
constexpr Colour kBackground{255, 255, 255};
constexpr Colour kAxis{60, 60, 60};
constexpr Colour kText{30, 30, 30};
constexpr Colour kGrid{222, 222, 222};
constexpr Colour kLegendBorder{190, 190, 190};
constexpr Colour kTrainRaw{174, 199, 232};
constexpr Colour kTrainEma{31, 119, 180};
constexpr Colour kEval{255, 127, 14};
constexpr Colour kLr{44, 160, 44};
constexpr Colour kMuted{130, 130, 130};

constexpr int kMinWidth = 320;  // below this the tick labels overlap
constexpr int kMinHeight = 200;
constexpr int kMaxSide = 16384;  // far beyond any chart; cairo's image surfaces stop at 32767
constexpr int kTickLength = 4;
constexpr double kMarkerRadius = 3.5;

struct Font {
  double size;
  bool bold = false;
};
constexpr Font kLabelFont{11};  // tick labels, legend
constexpr Font kAxisFont{12};   // axis titles
constexpr Font kTitleFont{15, true};
constexpr Font kMessageFont{18};  // "no loss values to plot"
// Half a digit's height in DejaVu Sans (digits are 0.73 em tall): a label's baseline goes this
// far below the line it is centred on.
double half_digit(Font f) {
  return 0.36 * f.size;
}

struct Point {
  double x;
  double y;  // NaN: a gap (a skipped value)
};

struct Series {
  std::vector<Point> train, eval, lr;
};

void check_options(const PlotOptions& opt) {
  const std::string size = std::to_string(opt.width) + "x" + std::to_string(opt.height);
  if (opt.width < kMinWidth || opt.height < kMinHeight) {
    throw std::invalid_argument("write_training_plot: image must be at least " +
                                std::to_string(kMinWidth) + "x" + std::to_string(kMinHeight) +
                                ", got " + size);
  }
  if (opt.width > kMaxSide || opt.height > kMaxSide) {
    throw std::invalid_argument("write_training_plot: image must be at most " +
                                std::to_string(kMaxSide) + " pixels per side, got " + size);
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
    if (r.kind == opt.train_kind && opt.lr_panel && r.fields.contains(opt.lr_field)) {
      const double v = r.number(opt.lr_field);
      s.lr.push_back({x, std::isfinite(v) ? v : std::nan("")});
    }
  }
  for (auto* v : {&s.train, &s.eval, &s.lr}) {
    std::stable_sort(v->begin(), v->end(),
                     [](const Point& a, const Point& b) { return a.x < b.x; });
  }
  return s;
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

// A cairo context in pixel coordinates: (x, y) is the centre of pixel column x, row y, so a
// 1-px stroke along integer coordinates covers exactly one row or column.
class Painter {
 public:
  explicit Painter(cairo_surface_t* surface) : cr_(cairo_create(surface)) {
    cairo_translate(cr_, 0.5, 0.5);
    cairo_set_line_join(cr_, CAIRO_LINE_JOIN_ROUND);
  }
  ~Painter() { cairo_destroy(cr_); }
  Painter(const Painter&) = delete;
  Painter& operator=(const Painter&) = delete;

  void fill_rect(const PixelRect& r, Colour c) {
    colour(c);
    cairo_rectangle(cr_, r.left - 0.5, r.top - 0.5, r.width(), r.height());
    cairo_fill(cr_);
  }
  void frame(const PixelRect& r, Colour c) {
    colour(c);
    cairo_set_line_width(cr_, 1);
    cairo_rectangle(cr_, r.left, r.top, r.right - r.left, r.bottom - r.top);
    cairo_stroke(cr_);
  }
  // A straight line; `dash` > 0 draws it dashed (dash on, dash off).
  void segment(double x0, double y0, double x1, double y1, Colour c, double width,
               double dash = 0) {
    colour(c);
    cairo_set_line_width(cr_, width);
    if (dash > 0) cairo_set_dash(cr_, &dash, 1, 0);
    cairo_move_to(cr_, x0, y0);
    cairo_line_to(cr_, x1, y1);
    cairo_stroke(cr_);
    cairo_set_dash(cr_, nullptr, 0, 0);
  }
  void disc(double cx, double cy, double radius, Colour c) {
    colour(c);
    cairo_new_sub_path(cr_);
    cairo_arc(cr_, cx, cy, radius, 0, 2 * M_PI);
    cairo_fill(cr_);
  }
  // Points joined by one stroked path that breaks at NaN; a point with no finite neighbour is
  // drawn as a dot `width` in radius.
  void polyline(const std::vector<Point>& pts, Colour c, double width);

  // Text with its baseline at y; the x anchor is the left end (align 0), the middle (0.5) or the
  // right end (1). Drawn at whole device pixels, so hinted glyphs stay sharp.
  void text(double x, double y, const std::string& s, Colour c, Font font, double align = 0);
  double text_width(const std::string& s, Font font) {
    use_font(font);
    cairo_text_extents_t e;
    cairo_text_extents(cr_, s.c_str(), &e);
    return e.x_advance;
  }

  // Drawing is clipped to the inside of r (its frame excluded) until unclip().
  void clip_inside(const PixelRect& r) {
    cairo_save(cr_);
    cairo_rectangle(cr_, r.left + 0.5, r.top + 0.5, r.right - r.left - 1, r.bottom - r.top - 1);
    cairo_clip(cr_);
  }
  void unclip() { cairo_restore(cr_); }

 private:
  void colour(Colour c) { cairo_set_source_rgb(cr_, c.r / 255.0, c.g / 255.0, c.b / 255.0); }
  void use_font(Font font) {
    cairo_select_font_face(cr_, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           font.bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, font.size);
  }

  cairo_t* cr_;
};

void Painter::polyline(const std::vector<Point>& pts, Colour c, double width) {
  colour(c);
  cairo_set_line_width(cr_, width);
  cairo_set_line_cap(cr_, CAIRO_LINE_CAP_ROUND);
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (std::isnan(pts[i].y)) continue;
    const bool prev = i > 0 && !std::isnan(pts[i - 1].y);
    const bool next = i + 1 < pts.size() && !std::isnan(pts[i + 1].y);
    if (!prev && !next) {
      cairo_stroke(cr_);
      disc(pts[i].x, pts[i].y, width, c);
    } else if (!prev) {
      cairo_move_to(cr_, pts[i].x, pts[i].y);
    } else {
      cairo_line_to(cr_, pts[i].x, pts[i].y);
    }
  }
  cairo_stroke(cr_);
  cairo_set_line_cap(cr_, CAIRO_LINE_CAP_BUTT);
}

void Painter::text(double x, double y, const std::string& s, Colour c, Font font, double align) {
  use_font(font);
  cairo_text_extents_t e;
  cairo_text_extents(cr_, s.c_str(), &e);
  // The 0.5 translation undone, then rounded: the pen starts on a pixel corner.
  const double dx = std::round(x - align * e.x_advance + 0.5) - 0.5;
  const double dy = std::round(y + 0.5) - 0.5;
  colour(c);
  cairo_move_to(cr_, dx, dy);
  cairo_show_text(cr_, s.c_str());
  cairo_new_path(cr_);
}

// Where a data point goes in pixels. Far-off values (a point outside a fixed y range) are
// clamped to a million pixels: cairo's 24.8 fixed-point coordinates overflow near 8.4 million,
// and a clamped line still crosses the image within a fraction of a pixel of the true one.
std::vector<Point> to_pixels(const std::vector<Point>& pts, const Scale& sx, const Scale& sy) {
  constexpr double kFar = 1e6;
  std::vector<Point> out;
  out.reserve(pts.size());
  for (const Point& p : pts) {
    const double y = std::isnan(p.y) ? p.y : std::clamp(sy.map(p.y), -kFar, kFar);
    out.push_back({std::clamp(sx.map(p.x), -kFar, kFar), y});
  }
  return out;
}

// Title, axis titles, and the panels: the loss panel, and under it the lr panel if there is one.
struct Layout {
  int left, right, top, bottom;  // outer bounds of the panels
  PixelRect loss;
  PixelRect lr;  // empty (right < left) without an lr panel
  bool has_lr() const { return lr.right >= lr.left; }
  const PixelRect& bottom_panel() const { return has_lr() ? lr : loss; }
};

Layout make_layout(const PlotOptions& opt, bool with_lr) {
  Layout l{78, opt.width - 18, 44, opt.height - 46, {}, {}};
  l.loss = {l.left, l.top, l.right, l.bottom};
  if (with_lr) {
    const int lr_h = std::max(50, (l.bottom - l.top) / 4);
    l.lr = {l.left, l.bottom - lr_h + 1, l.right, l.bottom};
    l.loss.bottom = l.lr.top - 26;
  }
  return l;
}

void draw_titles(Painter& p, const Layout& l, const PlotOptions& opt) {
  p.text(opt.width / 2.0, 26, opt.title, kText, kTitleFont, 0.5);
  p.text(l.left, l.loss.top - 7, opt.log_y ? "loss (log scale)" : "loss", kText, kAxisFont);
  if (l.has_lr()) p.text(l.left, l.lr.top - 7, "learning rate", kText, kAxisFont);
  p.text((l.left + l.right) / 2.0, l.bottom + 36, "step", kText, kAxisFont, 0.5);
}

// Dashed grid lines at the x ticks, inside a panel.
void draw_x_grid(Painter& p, const PixelRect& r, const AxisTicks& ticks, const Scale& sx) {
  for (double v : ticks.values) {
    const double x = std::round(sx.map(v));
    p.segment(x, r.top + 1, x, r.bottom - 1, kGrid, 1, 4);
  }
}

// Grid lines, tick marks and labels of a y axis.
void draw_y_axis(Painter& p, const PixelRect& r, const Axis& axis, const Scale& sy) {
  for (double v : axis.ticks) {
    const double y = std::round(sy.map(v));
    p.segment(r.left + 1, y, r.right - 1, y, kGrid, 1, 4);
    p.segment(r.left - kTickLength, y, r.left - 1, y, kAxis, 1);
    p.text(r.left - kTickLength - 4, y + half_digit(kLabelFont), plot::y_label(v, axis), kText,
           kLabelFont, 1);
  }
}

// Tick marks under every panel, labels under the bottom one.
void draw_x_axis(Painter& p, const Layout& l, const AxisTicks& ticks, const Scale& sx) {
  for (double v : ticks.values) {
    const double x = std::round(sx.map(v));
    for (const PixelRect* r : {&l.loss, l.has_lr() ? &l.lr : nullptr}) {
      if (r) p.segment(x, r->bottom + 1, x, r->bottom + kTickLength, kAxis, 1);
    }
    p.text(x, l.bottom_panel().bottom + kTickLength + 4 + kLabelFont.size,
           plot::x_label(v, ticks.step), kText, kLabelFont, 0.5);
  }
}

struct LegendEntry {
  std::string label;
  Colour colour;
  double width;
  bool marker;
};

// A boxed legend in the top-right corner of the panel, left out where it would take more than
// half the panel's width or run past its bottom (a very small image).
void draw_legend(Painter& p, const PixelRect& panel, const std::vector<LegendEntry>& entries) {
  if (entries.empty()) return;
  double text_w = 0;
  for (const auto& e : entries) text_w = std::max(text_w, p.text_width(e.label, kLabelFont));
  constexpr int kRow = 17, kSwatch = 24;
  const int w = 10 + kSwatch + 8 + static_cast<int>(std::ceil(text_w)) + 10;
  const int h = 6 + static_cast<int>(entries.size()) * kRow;
  const PixelRect box{panel.right - 10 - w, panel.top + 10, panel.right - 10, panel.top + 10 + h};
  if (box.bottom > panel.bottom - 10 || 2 * w > panel.width()) return;  // a tiny image: no room
  p.fill_rect(box, kBackground);
  p.frame(box, kLegendBorder);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    const double y = box.top + 3 + kRow * (i + 0.5);  // the row's middle
    const int sx = box.left + 10;
    p.segment(sx, y, sx + kSwatch, y, e.colour, e.width);
    if (e.marker) p.disc(sx + kSwatch / 2.0, y, kMarkerRadius, e.colour);
    p.text(sx + kSwatch + 8, y + half_digit(kLabelFont), e.label, kText, kLabelFont);
  }
}

// The train (raw and EMA) and eval lines of the loss panel; returns their legend.
std::vector<LegendEntry> draw_loss_series(Painter& p, const Series& s, const PlotResult& result,
                                          const Scale& sx, const Scale& sy, double smoothing) {
  if (std::isnan(smoothing)) {
    // An averaging window of ~1/50 of the run: smooth enough to read the trend, short enough
    // not to lag visibly behind a fast initial drop.
    smoothing = std::clamp(1.0 - 50.0 / static_cast<double>(result.train_points), 0.0, 0.98);
  }
  const bool ema = smoothing > 0 && result.train_points >= 3;
  std::vector<LegendEntry> legend;
  if (result.train_points > 0) {
    const Colour c = ema ? kTrainRaw : kTrainEma;
    p.polyline(to_pixels(s.train, sx, sy), c, ema ? 1 : 2);
    legend.push_back({"train loss", c, ema ? 1.0 : 2.0, false});
  }
  if (ema) {
    p.polyline(to_pixels(ema_series(s.train, smoothing), sx, sy), kTrainEma, 2);
    legend.push_back({"train loss (EMA)", kTrainEma, 2, false});
  }
  if (result.eval_points > 0) {
    const std::vector<Point> pts = to_pixels(s.eval, sx, sy);
    p.polyline(pts, kEval, 2);
    for (const Point& q : pts) {
      if (!std::isnan(q.y)) p.disc(q.x, q.y, kMarkerRadius, kEval);
    }
    legend.push_back({"eval loss", kEval, 2, true});
  }
  return legend;
}

// The loss panel: y axis from the train and eval values, grid, series, frame and legend. Fills
// in the loss axis range of `result`.
void draw_loss_panel(Painter& p, const Series& s, const Layout& l, const AxisTicks& xt,
                     const Scale& sx, const PlotOptions& opt, PlotResult& result) {
  double ymin = INFINITY, ymax = -INFINITY;
  finite_range(s.train, ymin, ymax);
  finite_range(s.eval, ymin, ymax);
  const int y_target = std::max(2, l.loss.height() / 60);
  const Axis ya = opt.log_y ? plot::log_axis(ymin, ymax, opt.y_min, opt.y_max)
                            : plot::linear_axis(ymin, ymax, opt.y_min, opt.y_max, y_target);
  const Scale sy{ya.lo, ya.hi, ya.log, static_cast<double>(l.loss.bottom),
                 static_cast<double>(l.loss.top)};
  result.y_min = ya.lo;
  result.y_max = ya.hi;
  result.log_y = ya.log;

  draw_x_grid(p, l.loss, xt, sx);
  draw_y_axis(p, l.loss, ya, sy);
  p.clip_inside(l.loss);
  const std::vector<LegendEntry> legend = draw_loss_series(p, s, result, sx, sy, opt.smoothing);
  p.unclip();
  p.frame(l.loss, kAxis);
  draw_legend(p, l.loss, legend);
}

void draw_lr_panel(Painter& p, const std::vector<Point>& lr, const Layout& l, const AxisTicks& xt,
                   const Scale& sx) {
  double lmin = INFINITY, lmax = -INFINITY;
  finite_range(lr, lmin, lmax);
  const Axis la =
      plot::linear_axis(lmin, lmax, std::nan(""), std::nan(""), std::max(3, l.lr.height() / 30));
  const Scale sl{la.lo, la.hi, false, static_cast<double>(l.lr.bottom),
                 static_cast<double>(l.lr.top)};
  draw_x_grid(p, l.lr, xt, sx);
  draw_y_axis(p, l.lr, la, sl);
  p.clip_inside(l.lr);
  p.polyline(to_pixels(lr, sx, sl), kLr, 2);
  p.unclip();
  p.frame(l.lr, kAxis);
}

// The step axis: integer ticks over every series' finite points, steps x_min and x_max
// kPlotInset pixels inside the frame.
AxisTicks step_ticks(const Series& s, const Layout& l, Scale& sx) {
  double xmin = INFINITY, xmax = -INFINITY;
  for (const auto* v : {&s.train, &s.eval, &s.lr}) {
    for (const Point& p : *v) {
      if (std::isnan(p.y)) continue;
      xmin = std::min(xmin, p.x);
      xmax = std::max(xmax, p.x);
    }
  }
  const AxisTicks xt = nice_ticks(xmin, xmax, std::max(2, (l.right - l.left) / 110), 1.0);
  sx = {xt.lo, xt.hi, false, static_cast<double>(l.left + kPlotInset),
        static_cast<double>(l.right - kPlotInset)};
  return xt;
}

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
using Surface = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;

bool is_svg_path(const std::string& path) {
  if (path.size() < 4) return false;
  std::string ext = path.substr(path.size() - 4);
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == ".svg";
}

// An SVG surface writes to its file as it goes (it is opened here); an image surface is written
// as a PNG by save().
Surface open_surface(const std::string& path, int width, int height) {
  Surface s(is_svg_path(path) ? cairo_svg_surface_create(path.c_str(), width, height)
                              : cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height));
  const cairo_status_t st = cairo_surface_status(s.get());
  if (st != CAIRO_STATUS_SUCCESS) {
    throw std::runtime_error("write_training_plot: cannot write " +
                             std::string(is_svg_path(path) ? "SVG " : "PNG ") + path + ": " +
                             cairo_status_to_string(st));
  }
  if (is_svg_path(path)) cairo_svg_surface_set_document_unit(s.get(), CAIRO_SVG_UNIT_PX);
  return s;
}

void save(cairo_surface_t* s, const std::string& path) {
  const bool svg = is_svg_path(path);
  cairo_surface_flush(s);
  cairo_status_t st = cairo_surface_status(s);
  if (st == CAIRO_STATUS_SUCCESS) {
    if (svg) {
      cairo_surface_finish(s);
      st = cairo_surface_status(s);
    } else {
      st = cairo_surface_write_to_png(s, path.c_str());
    }
  }
  if (st != CAIRO_STATUS_SUCCESS) {
    throw std::runtime_error("write_training_plot: cannot write " +
                             std::string(svg ? "SVG " : "PNG ") + path + ": " +
                             cairo_status_to_string(st));
  }
}

// Everything but the empty-plot case, on a white surface; fills in `result`'s ranges.
void draw_chart(Painter& p, const Series& s, const Layout& l, const PlotOptions& opt,
                PlotResult& result) {
  Scale sx{};
  const AxisTicks xt = step_ticks(s, l, sx);
  result.x_min = xt.lo;
  result.x_max = xt.hi;
  draw_loss_panel(p, s, l, xt, sx, opt, result);
  if (l.has_lr()) draw_lr_panel(p, s.lr, l, xt, sx);
  draw_x_axis(p, l, xt, sx);
}

}  // namespace

bool training_plots_available() {
  return true;
}

PlotResult write_training_plot(const std::vector<Record>& records, const std::string& path,
                               const PlotOptions& opt) {
  check_options(opt);
  const Series s = collect_series(records, opt);
  PlotResult result;
  result.train_points = count_finite(s.train);
  result.eval_points = count_finite(s.eval);
  result.lr_points = count_finite(s.lr);
  const bool has_loss = result.train_points + result.eval_points > 0;
  const Layout l = make_layout(opt, has_loss && result.lr_points > 0);
  result.loss_panel = l.loss;

  Surface surface = open_surface(path, opt.width, opt.height);
  {
    Painter p(surface.get());
    p.fill_rect({0, 0, opt.width - 1, opt.height - 1}, kBackground);
    draw_titles(p, l, opt);
    if (has_loss) {
      draw_chart(p, s, l, opt, result);
    } else {
      p.text((l.left + l.right) / 2.0,
             (l.loss.top + l.loss.bottom) / 2.0 + half_digit(kMessageFont),
             "no loss values to plot", kMuted, kMessageFont, 0.5);
      p.frame(l.loss, kAxis);
    }
  }
  save(surface.get(), path);
  return result;
}

}  // namespace qat::train
