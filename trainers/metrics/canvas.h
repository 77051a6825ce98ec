// An 8-bit RGB raster with the few primitives a line chart needs (filled rectangles, thick lines,
// discs, dashed rules, text in a 5x7 bitmap font) and a PNG writer (libpng). Drawing is clipped to
// a settable rectangle so a series cannot paint outside its panel. Coordinates: x right, y down,
// pixels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qat::train {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Rgb& o) const { return !(*this == o); }
};

// An inclusive pixel rectangle.
struct PixelRect {
  int left = 0, top = 0, right = -1, bottom = -1;
  int width() const { return right - left + 1; }
  int height() const { return bottom - top + 1; }
};

class Canvas {
 public:
  // Throws std::invalid_argument unless 1 <= width, height <= 16384.
  Canvas(int width, int height, Rgb background);

  int width() const { return width_; }
  int height() const { return height_; }
  Rgb at(int x, int y) const;  // throws std::out_of_range outside the image

  void set_clip(PixelRect clip);  // intersected with the image
  void reset_clip();

  void put(int x, int y, Rgb color);  // ignored outside the clip rectangle
  void fill_rect(PixelRect rect, Rgb color);
  // A line `thickness` pixels wide (a square brush along Bresenham's path); the ends are rounded
  // to the nearest pixel.
  void line(double x0, double y0, double x1, double y1, Rgb color, int thickness);
  void hline_dashed(int x0, int x1, int y, Rgb color, int dash);
  void vline_dashed(int x, int y0, int y1, Rgb color, int dash);
  void disc(double cx, double cy, double radius, Rgb color);
  // Text with its top-left corner at (x, y), each font pixel drawn as a scale x scale square.
  void text(int x, int y, const std::string& s, Rgb color, int scale = 1);
  static int text_width(const std::string& s, int scale = 1);
  static int text_height(int scale = 1);  // without descenders

  // Writes an 8-bit RGB PNG; throws std::runtime_error with libpng's message on failure.
  void write_png(const std::string& path) const;

 private:
  int width_;
  int height_;
  PixelRect clip_;
  std::vector<uint8_t> pixels_;  // (height, width, 3)
};

}  // namespace qat::train
