// The training-curve PNG, read back with cairo's PNG reader (not the drawing code): size and
// format, background, frame and series pixels where the axes put them, 1-2-5 ticks, text, SVG
// output, and degenerate inputs (no records, one point, NaN, a constant series) drawn rather than
// crashing. Lines are anti-aliased, so a pixel of a line is one that shows the line's colour over
// the white background at half coverage or more, and positions are checked to within a pixel or
// two of the axes' mapping. In a build without cairo (QAT_PLOTS) only the ticks and the "plots
// are off" error are checked.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>

#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/metrics/plot_config.h"
#include "trainers/metrics/training_plot.h"

#if QAT_HAVE_PLOT
#include <cairo.h>
#endif

using Catch::Contains;
using namespace qat::train;

TEST_CASE("Nice ticks are multiples of a 1-2-5 step covering the range", "[metrics][plot]") {
  AxisTicks t = nice_ticks(0.13, 0.92, 5);
  CHECK(t.step == Approx(0.2));
  CHECK(t.lo == Approx(0.0));
  CHECK(t.hi == Approx(1.0));
  CHECK(t.values.size() == 6);
  t = nice_ticks(1, 487, 6, 1.0);
  CHECK(t.step == 100);
  CHECK(t.values == std::vector<double>{0, 100, 200, 300, 400, 500});
  t = nice_ticks(3, 3, 6, 1.0);  // one point: a range around it, integer steps
  CHECK(t.step == 1);
  CHECK(t.lo <= 2.7);
  CHECK(t.hi >= 3.3);
  t = nice_ticks(2.5, 2.5, 7);  // a constant: +-10% around it, still centred
  CHECK((t.lo + t.hi) / 2 == Approx(2.5));
  CHECK_THROWS_AS(nice_ticks(0, std::nan(""), 5), std::invalid_argument);
}

#if !QAT_HAVE_PLOT

TEST_CASE("Without cairo the plots are off and write_training_plot says so", "[metrics][plot]") {
  CHECK_FALSE(training_plots_available());
  CHECK_THROWS_WITH(write_training_plot({}, qat::test::temp_dir() + "/loss.png"),
                    Contains("this build has no training plots"));
}

#else

namespace {

struct Rgb {
  int r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Rgb& o) const { return !(*this == o); }
};

constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kFrame{60, 60, 60};
constexpr Rgb kText{30, 30, 30};
constexpr Rgb kMuted{130, 130, 130};
constexpr Rgb kEma{31, 119, 180};
constexpr Rgb kRaw{174, 199, 232};
constexpr Rgb kEval{255, 127, 14};
constexpr Rgb kLr{44, 160, 44};

// An RGB image decoded by cairo's PNG reader.
struct Image {
  int width = 0, height = 0;
  std::vector<Rgb> px;
  Rgb at(int x, int y) const { return px[static_cast<std::size_t>(y) * width + x]; }

  // How much of `colour` the pixel shows over the white background: the a in
  // pixel = (1 - a) * white + a * colour, or 0 when the pixel is not such a mix (another colour,
  // or `colour` blended with something other than white).
  double coverage(int x, int y, Rgb colour) const {
    const Rgb p = at(x, y);
    const double d[3] = {255.0 - p.r, 255.0 - p.g, 255.0 - p.b};
    const double k[3] = {255.0 - colour.r, 255.0 - colour.g, 255.0 - colour.b};
    const double a = std::clamp(
        (d[0] * k[0] + d[1] * k[1] + d[2] * k[2]) / (k[0] * k[0] + k[1] * k[1] + k[2] * k[2]), 0.0,
        1.0);
    for (int c = 0; c < 3; ++c) {
      if (std::fabs(d[c] - a * k[c]) > 12) return 0;
    }
    return a;
  }
  // How many pixels in the inclusive rectangle show `colour` at `min_coverage` or more.
  int count(Rgb colour, int x0, int y0, int x1, int y1, double min_coverage = 0.5) const {
    int n = 0;
    for (int y = std::max(y0, 0); y <= std::min(y1, height - 1); ++y) {
      for (int x = std::max(x0, 0); x <= std::min(x1, width - 1); ++x) {
        n += coverage(x, y, colour) >= min_coverage;
      }
    }
    return n;
  }
  // The rows of column x in [y0, y1] that show `colour` at half coverage or more.
  std::vector<int> rows_with(Rgb colour, int x, int y0, int y1) const {
    std::vector<int> rows;
    for (int y = y0; y <= y1; ++y) {
      if (coverage(x, y, colour) >= 0.5) rows.push_back(y);
    }
    return rows;
  }
};

Image read_png(const std::string& path) {
  // The file itself is 8-bit RGB (IHDR: bit depth 8, colour type 2; no alpha, no palette).
  std::ifstream f(path, std::ios::binary);
  const std::vector<char> head((std::istreambuf_iterator<char>(f)), {});
  REQUIRE(head.size() > 26);
  CHECK(std::string(head.data() + 1, 3) == "PNG");
  CHECK(static_cast<int>(head[24]) == 8);
  CHECK(static_cast<int>(head[25]) == 2);

  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  REQUIRE(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS);
  CHECK(cairo_image_surface_get_format(s) == CAIRO_FORMAT_RGB24);
  Image out;
  out.width = cairo_image_surface_get_width(s);
  out.height = cairo_image_surface_get_height(s);
  const int stride = cairo_image_surface_get_stride(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  for (int y = 0; y < out.height; ++y) {
    const auto* row =
        reinterpret_cast<const uint32_t*>(data + static_cast<std::size_t>(y) * stride);
    for (int x = 0; x < out.width; ++x) {
      out.px.push_back({static_cast<int>(row[x] >> 16 & 0xff), static_cast<int>(row[x] >> 8 & 0xff),
                        static_cast<int>(row[x] & 0xff)});
    }
  }
  cairo_surface_destroy(s);
  return out;
}

Record rec(int64_t step, const std::string& kind, double loss, double lr = std::nan("")) {
  Record r;
  r.step = step;
  r.kind = kind;
  r.fields["loss"] = loss;
  if (!std::isnan(lr)) r.fields["lr"] = lr;
  return r;
}

int px(double v) {
  return static_cast<int>(std::lround(v));
}

}  // namespace

TEST_CASE("A constant training loss draws a horizontal line mid-panel", "[metrics][plot]") {
  CHECK(training_plots_available());
  const std::string path = qat::test::temp_dir() + "/loss.png";
  std::vector<Record> records;
  for (int s = 0; s <= 200; s += 2) records.push_back(rec(s, "train", 2.5));
  const PlotResult res = write_training_plot(records, path);
  const Image img = read_png(path);
  REQUIRE(img.width == 960);
  REQUIRE(img.height == 540);
  CHECK(res.train_points == 101);
  CHECK(res.eval_points == 0);
  CHECK(res.lr_points == 0);  // no lr field: no lr panel, the loss panel takes the height
  const PixelRect& p = res.loss_panel;
  CHECK(p.bottom > 450);

  // Background in the corners, the frame (crisp: exactly its colour) on all four sides.
  CHECK(img.at(2, 2) == kWhite);
  CHECK(img.at(img.width - 3, img.height - 3) == kWhite);
  const int mid_x = (p.left + p.right) / 2, mid_y = (p.top + p.bottom) / 2;
  CHECK(img.at(p.left, mid_y) == kFrame);
  CHECK(img.at(p.right, mid_y) == kFrame);
  CHECK(img.at(mid_x, p.top) == kFrame);
  CHECK(img.at(mid_x, p.bottom) == kFrame);
  CHECK(img.at(p.left + 1, mid_y + 3) != kFrame);  // one pixel wide
  CHECK(img.at(mid_x + 3, p.bottom - 1) != kFrame);

  // The axis is symmetric around 2.5, so the EMA line (2 px) runs along the panel's middle row
  // across the whole data range, and nowhere else in those columns below the legend.
  CHECK(res.y_min < 2.5);
  CHECK(res.y_max > 2.5);
  CHECK((res.y_min + res.y_max) / 2 == Approx(2.5));
  const double row = res.y_pixel(2.5);
  CHECK(std::fabs(row - mid_y) <= 1);
  // Steps 0 and 200 sit just inside the frame.
  CHECK(res.x_min == 0);
  CHECK(res.x_max == 200);
  CHECK(res.x_pixel(0) == p.left + kPlotInset);
  CHECK(res.x_pixel(200) == p.right - kPlotInset);
  const int x0 = static_cast<int>(std::ceil(res.x_pixel(0))) + 1;
  const int x1 = static_cast<int>(std::floor(res.x_pixel(200))) - 1;
  for (int x = x0; x <= x1; x += 7) {
    CAPTURE(x);
    const std::vector<int> rows = img.rows_with(kEma, x, p.top + 60, p.bottom - 1);
    CHECK(!rows.empty());
    CHECK(rows.size() <= 3);
    for (int y : rows) CHECK(std::fabs(y - row) <= 1.5);
  }
  // Nothing of the series outside the panel.
  CHECK(img.count(kEma, 0, 0, p.left - 1, img.height - 1, 0.2) == 0);
  CHECK(img.count(kEma, p.right + 1, 0, img.width - 1, img.height - 1, 0.2) == 0);
  CHECK(img.count(kEma, 0, p.bottom + 1, img.width - 1, img.height - 1, 0.2) == 0);
}

TEST_CASE("Train, eval and learning-rate series land where their axes put them",
          "[metrics][plot]") {
  const std::string path = qat::test::temp_dir() + "/loss.png";
  std::vector<Record> records;
  for (int s = 1; s <= 300; ++s) {
    const double loss = 2.0 + 3.0 * std::exp(-s / 60.0) + 0.15 * std::sin(s * 1.7);
    const double lr = 1e-4 * std::min(1.0, s / 30.0) * (0.5 + 0.5 * std::cos(M_PI * s / 300));
    records.push_back(rec(s, "train", s == 150 ? std::nan("") : loss, lr));
    if (s % 50 == 0) records.push_back(rec(s, "eval", 2.1 + 3.0 * std::exp(-s / 60.0)));
  }
  records.push_back(rec(300, "checkpoint", 0));  // other kinds are ignored
  PlotOptions opt;
  opt.width = 800;
  opt.height = 600;
  const PlotResult res = write_training_plot(records, path, opt);
  const Image img = read_png(path);
  CHECK(img.width == 800);
  CHECK(img.height == 600);
  CHECK(res.train_points == 299);  // the NaN at step 150 is skipped
  CHECK(res.eval_points == 6);
  CHECK(res.lr_points == 300);
  CHECK(res.x_min == 0);
  CHECK(res.x_max == 300);

  const PixelRect& p = res.loss_panel;
  CHECK(img.count(kRaw, p.left, p.top, p.right, p.bottom) > 300);
  CHECK(img.count(kEma, p.left, p.top, p.right, p.bottom) > 300);
  // The raw line's zigzag troughs lie well below the EMA line (which trails above a falling
  // curve): each is drawn at its own point.
  for (int s = 20; s <= 280; ++s) {
    const double noise = 0.15 * std::sin(s * 1.7);
    if (noise > -0.14 || std::abs(s - 150) <= 1) continue;
    const int x = px(res.x_pixel(s));
    const int y = px(res.y_pixel(2.0 + 3.0 * std::exp(-s / 60.0) + noise));
    CAPTURE(s, x, y);
    CHECK(img.count(kRaw, x - 1, y - 1, x + 1, y + 1) > 0);
  }
  // Each eval point is a marker (a disc of radius 3.5) centred where the axes map it: the 3x3
  // pixels around that point are fully orange, and most of the 5x5.
  for (int s = 50; s <= 300; s += 50) {
    const double v = 2.1 + 3.0 * std::exp(-s / 60.0);
    const int x = px(res.x_pixel(s));
    const int y = px(res.y_pixel(v));
    CAPTURE(s, x, y);
    CHECK(img.count(kEval, x - 1, y - 1, x + 1, y + 1, 0.9) == 9);
    CHECK(img.count(kEval, x - 2, y - 2, x + 2, y + 2, 0.9) >= 13);
    // ... and the marker is not a few pixels off: the pixels 5 away on either side are not.
    CHECK(img.count(kEval, x - 5, y - 5, x - 5, y + 5, 0.9) <= 2);
    CHECK(img.count(kEval, x + 5, y - 5, x + 5, y + 5, 0.9) <= 2);
  }
  // The learning rate is in its own panel below the loss panel.
  CHECK(img.count(kLr, 0, 0, img.width - 1, p.bottom, 0.2) == 0);
  CHECK(img.count(kLr, p.left, p.bottom + 1, p.right, img.height - 1) > 300);
}

TEST_CASE("A log-scale axis, one point and all-NaN series are drawn, not errors",
          "[metrics][plot]") {
  const std::string dir = qat::test::temp_dir();
  SECTION("log scale") {
    std::vector<Record> records;
    for (int s = 0; s < 100; ++s) records.push_back(rec(s, "train", 10.0 * std::pow(0.97, s)));
    PlotOptions opt;
    opt.log_y = true;
    opt.smoothing = 0;  // no EMA: the train loss is one strong line
    const PlotResult res = write_training_plot(records, dir + "/log.png", opt);
    CHECK(res.train_points == 100);
    CHECK(res.y_min < 10.0 * std::pow(0.97, 99));
    CHECK(res.y_max > 10.0);
    // On a log axis a value's height is proportional to log10 of it: the line passes through
    // the pixel computed here from the axis range alone.
    const Image img = read_png(dir + "/log.png");
    const double v = 10.0 * std::pow(0.97, 50);
    const PixelRect& p = res.loss_panel;
    const double frac =
        (std::log10(v) - std::log10(res.y_min)) / (std::log10(res.y_max) - std::log10(res.y_min));
    const double y = p.bottom - frac * (p.bottom - p.top);
    CHECK(res.y_pixel(v) == Approx(y));
    const int xi = px(res.x_pixel(50));
    const std::vector<int> rows = img.rows_with(kEma, xi, p.top + 1, p.bottom - 1);
    CHECK(!rows.empty());
    for (int r : rows) CHECK(std::fabs(r - y) <= 1.5);
  }
  SECTION("one point") {
    const PlotResult res = write_training_plot({rec(7, "eval", 3.0)}, dir + "/one.png");
    CHECK(res.eval_points == 1);
    const Image img = read_png(dir + "/one.png");
    const int x = px(res.x_pixel(7));
    const int y = px(res.y_pixel(3.0));
    CHECK(img.coverage(x, y, kEval) > 0.9);
    CHECK(img.count(kEval, res.loss_panel.left, res.loss_panel.top, x - 5, res.loss_panel.bottom,
                    0.2) == 0);
  }
  SECTION("only NaN values") {
    const PlotResult res = write_training_plot(
        {rec(1, "train", std::nan("")), rec(2, "train", INFINITY)}, dir + "/nan.png");
    CHECK(res.train_points == 0);
  }
}

TEST_CASE("Titles and tick labels are drawn as text", "[metrics][plot]") {
  // A font is found on a headless machine: there is dark ink in the title line, left of the
  // panel (y tick labels) and under it (x tick labels and the axis title).
  const std::string path = qat::test::temp_dir() + "/loss.png";
  std::vector<Record> records;
  for (int s = 0; s <= 100; ++s) records.push_back(rec(s, "train", 3.0 - s / 100.0));
  const PlotResult res = write_training_plot(records, path);
  const Image img = read_png(path);
  const PixelRect& p = res.loss_panel;
  CHECK(img.count(kText, 0, 0, img.width - 1, 30, 0.7) > 50);
  CHECK(img.count(kText, 0, p.top, p.left - 6, p.bottom, 0.7) > 50);
  CHECK(img.count(kText, 0, p.bottom + 6, img.width - 1, img.height - 1, 0.7) > 50);
}

TEST_CASE("A path ending in .svg gives an SVG of the same chart", "[metrics][plot]") {
  const std::string dir = qat::test::temp_dir();
  const PlotResult res =
      write_training_plot({rec(1, "train", 3.0), rec(2, "train", 2.0)}, dir + "/loss.SVG");
  CHECK(res.train_points == 2);
  std::ifstream f(dir + "/loss.SVG");
  const std::string svg((std::istreambuf_iterator<char>(f)), {});
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK_THAT(svg, Contains("<svg") && Contains("width=\"960px\"") && Contains("</svg>"));
  CHECK_THROWS_WITH(write_training_plot({}, dir + "/no/such/dir/x.svg"),
                    Contains("cannot write SVG"));
}

TEST_CASE("No records give an empty plot with a message and bad options are clear errors",
          "[metrics][plot]") {
  const std::string dir = qat::test::temp_dir();
  const PlotResult res = write_training_plot({}, dir + "/empty.png");
  CHECK(res.train_points + res.eval_points + res.lr_points == 0);
  const Image img = read_png(dir + "/empty.png");
  CHECK(img.width == 960);
  // The frame and, inside it, the grey message text (and nothing else).
  const PixelRect& p = res.loss_panel;
  CHECK(img.at(p.left, (p.top + p.bottom) / 2) == kFrame);
  CHECK(img.count(kMuted, p.left + 1, p.top + 1, p.right - 1, p.bottom - 1) > 100);
  CHECK(img.count(kText, p.left + 1, p.top + 1, p.right - 1, p.bottom - 1, 0.9) == 0);
  CHECK(img.count(kEma, 0, 0, img.width - 1, img.height - 1, 0.2) == 0);

  PlotOptions small;
  small.width = 100;
  CHECK_THROWS_WITH(write_training_plot({}, dir + "/x.png", small),
                    Contains("at least 320x200, got 100x540"));
  PlotOptions range;
  range.y_min = 3;
  range.y_max = 1;
  CHECK_THROWS_WITH(write_training_plot({}, dir + "/x.png", range),
                    Contains("y_min must be < y_max"));
  CHECK_THROWS_WITH(write_training_plot({rec(1, "train", 1.0)}, dir + "/no/such/dir/x.png"),
                    Contains("cannot write PNG"));
}

#endif  // QAT_HAVE_PLOT
