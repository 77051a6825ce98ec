// The training-curve PNG, read back with libpng: size and format, background, frame and series
// pixels where the axes put them, 1-2-5 ticks, and degenerate inputs (no records, one point,
// NaN, a constant series) drawn rather than crashing.
#include <png.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/metrics/bitmap_font.h"
#include "trainers/metrics/training_plot.h"

using Catch::Contains;
using namespace qat::train;

namespace {

constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kFrame{60, 60, 60};
constexpr Rgb kEma{31, 119, 180};
constexpr Rgb kRaw{174, 199, 232};
constexpr Rgb kEval{255, 127, 14};
constexpr Rgb kLr{44, 160, 44};

// An RGB image decoded by libpng itself (not by the code under test).
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  Rgb at(int x, int y) const {
    const std::size_t i = (static_cast<std::size_t>(y) * width + x) * 3;
    return {rgb[i], rgb[i + 1], rgb[i + 2]};
  }
  // How many pixels of `color` lie in the inclusive rectangle.
  int count(Rgb color, int x0, int y0, int x1, int y1) const {
    int n = 0;
    for (int y = y0; y <= y1; ++y) {
      for (int x = x0; x <= x1; ++x) n += at(x, y) == color;
    }
    return n;
  }
};

Image read_png(const std::string& path) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  REQUIRE(png_image_begin_read_from_file(&img, path.c_str()) != 0);
  // The file itself is 8-bit RGB (no alpha, no palette).
  CHECK(img.format == PNG_FORMAT_RGB);
  img.format = PNG_FORMAT_RGB;
  Image out;
  out.width = static_cast<int>(img.width);
  out.height = static_cast<int>(img.height);
  out.rgb.resize(PNG_IMAGE_SIZE(img));
  REQUIRE(png_image_finish_read(&img, nullptr, out.rgb.data(), 0, nullptr) != 0);
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

}  // namespace

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

TEST_CASE("A constant training loss draws a horizontal line mid-panel", "[metrics][plot]") {
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

  // Background in the corners, the frame on all four sides.
  CHECK(img.at(2, 2) == kWhite);
  CHECK(img.at(img.width - 3, img.height - 3) == kWhite);
  const int mid_x = (p.left + p.right) / 2, mid_y = (p.top + p.bottom) / 2;
  CHECK(img.at(p.left, mid_y) == kFrame);
  CHECK(img.at(p.right, mid_y) == kFrame);
  CHECK(img.at(mid_x, p.top) == kFrame);
  CHECK(img.at(mid_x, p.bottom) == kFrame);

  // The axis is symmetric around 2.5, so the EMA line (2 px) sits on the panel's middle row
  // across the whole data range, and nowhere else in that column below the legend.
  CHECK(res.y_min < 2.5);
  CHECK(res.y_max > 2.5);
  CHECK((res.y_min + res.y_max) / 2 == Approx(2.5));
  const int row = static_cast<int>(std::lround(res.y_pixel(2.5)));
  CHECK(std::abs(row - mid_y) <= 1);
  // Steps 0 and 200 sit just inside the frame.
  CHECK(res.x_min == 0);
  CHECK(res.x_max == 200);
  CHECK(res.x_pixel(0) == p.left + kPlotInset);
  CHECK(res.x_pixel(200) == p.right - kPlotInset);
  const int x0 = static_cast<int>(std::ceil(res.x_pixel(0))) + 1;
  const int x1 = static_cast<int>(std::floor(res.x_pixel(200))) - 1;
  for (int x = x0; x <= x1; x += 7) {
    CAPTURE(x);
    CHECK(img.count(kEma, x, row - 1, x, row + 1) >= 2);
    CHECK(img.count(kEma, x, p.top + 60, x, p.bottom - 1) == 2);
  }
  // Nothing of the series outside the panel.
  CHECK(img.count(kEma, 0, 0, p.left - 1, img.height - 1) == 0);
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
  // Each eval point is a marker (a disc of radius 3.5) centred where the axes map it.
  for (int s = 50; s <= 300; s += 50) {
    const double v = 2.1 + 3.0 * std::exp(-s / 60.0);
    const int x = static_cast<int>(std::lround(res.x_pixel(s)));
    const int y = static_cast<int>(std::lround(res.y_pixel(v)));
    CAPTURE(s, x, y);
    CHECK(img.count(kEval, x - 2, y - 2, x + 2, y + 2) == 25);
  }
  // The learning rate is in its own panel below the loss panel.
  CHECK(img.count(kLr, 0, 0, img.width - 1, p.bottom) == 0);
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
    const PlotResult res = write_training_plot(records, dir + "/log.png", opt);
    CHECK(res.train_points == 100);
    CHECK(res.y_min < 10.0 * std::pow(0.97, 99));
    CHECK(res.y_max > 10.0);
    // On a log axis a value's height is proportional to log10 of it: the raw line passes
    // through the pixel computed here from the axis range alone.
    const Image img = read_png(dir + "/log.png");
    const double v = 10.0 * std::pow(0.97, 50);
    const PixelRect& p = res.loss_panel;
    const double frac =
        (std::log10(v) - std::log10(res.y_min)) / (std::log10(res.y_max) - std::log10(res.y_min));
    const double y = p.bottom - frac * (p.bottom - p.top);
    CHECK(res.y_pixel(v) == Approx(y));
    const int xi = static_cast<int>(std::lround(res.x_pixel(50)));
    const int yi = static_cast<int>(std::lround(y));
    CHECK(img.count(kRaw, xi - 1, yi - 1, xi + 1, yi + 1) > 0);
  }
  SECTION("one point") {
    const PlotResult res = write_training_plot({rec(7, "eval", 3.0)}, dir + "/one.png");
    CHECK(res.eval_points == 1);
    const Image img = read_png(dir + "/one.png");
    const int x = static_cast<int>(std::lround(res.x_pixel(7)));
    const int y = static_cast<int>(std::lround(res.y_pixel(3.0)));
    CHECK(img.at(x, y) == kEval);
  }
  SECTION("only NaN values") {
    const PlotResult res = write_training_plot(
        {rec(1, "train", std::nan("")), rec(2, "train", INFINITY)}, dir + "/nan.png");
    CHECK(res.train_points == 0);
  }
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
  const Rgb grey{130, 130, 130};
  CHECK(img.count(grey, p.left, p.top, p.right, p.bottom) > 100);
  CHECK(img.count(kEma, 0, 0, img.width - 1, img.height - 1) == 0);

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

TEST_CASE("The bitmap font has a glyph for every printable ASCII character", "[metrics][plot]") {
  // Every character but the space has ink, and distinct characters look distinct.
  std::vector<std::array<uint8_t, kGlyphWidth>> seen;
  for (int c = 33; c <= 126; ++c) {
    CAPTURE(static_cast<char>(c));
    const auto& g = glyph(static_cast<char>(c));
    int ink = 0;
    for (uint8_t col : g) {
      // Only the descender letters use the eighth row.
      if (std::string("gjpqy").find(static_cast<char>(c)) == std::string::npos) CHECK(col < 0x80);
      ink += __builtin_popcount(col);
    }
    CHECK(ink > 0);
    CHECK(std::find(seen.begin(), seen.end(), g) == seen.end());
    seen.push_back(g);
  }
  CHECK(glyph('\n') == glyph('?'));
}
