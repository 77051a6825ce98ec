#include "trainers/metrics/canvas.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "trainers/metrics/bitmap_font.h"

namespace qat::train {

namespace {
constexpr int kMaxSide = 16384;  // far beyond any chart; keeps width * height * 3 small
}  // namespace

Canvas::Canvas(int width, int height, Rgb background) : width_(width), height_(height) {
  if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide) {
    throw std::invalid_argument("Canvas: size must be in [1, " + std::to_string(kMaxSide) +
                                "] per side, got " + std::to_string(width) + "x" +
                                std::to_string(height));
  }
  pixels_.resize(static_cast<std::size_t>(width) * height * 3);
  for (std::size_t i = 0; i < pixels_.size(); i += 3) {
    pixels_[i] = background.r;
    pixels_[i + 1] = background.g;
    pixels_[i + 2] = background.b;
  }
  reset_clip();
}

Rgb Canvas::at(int x, int y) const {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) {
    throw std::out_of_range("Canvas::at: (" + std::to_string(x) + ", " + std::to_string(y) +
                            ") is outside the " + std::to_string(width_) + "x" +
                            std::to_string(height_) + " image");
  }
  const std::size_t i = (static_cast<std::size_t>(y) * width_ + x) * 3;
  return {pixels_[i], pixels_[i + 1], pixels_[i + 2]};
}

void Canvas::set_clip(PixelRect clip) {
  clip_.left = std::max(clip.left, 0);
  clip_.top = std::max(clip.top, 0);
  clip_.right = std::min(clip.right, width_ - 1);
  clip_.bottom = std::min(clip.bottom, height_ - 1);
}

void Canvas::reset_clip() {
  clip_ = {0, 0, width_ - 1, height_ - 1};
}

void Canvas::put(int x, int y, Rgb color) {
  if (x < clip_.left || x > clip_.right || y < clip_.top || y > clip_.bottom) return;
  const std::size_t i = (static_cast<std::size_t>(y) * width_ + x) * 3;
  pixels_[i] = color.r;
  pixels_[i + 1] = color.g;
  pixels_[i + 2] = color.b;
}

void Canvas::fill_rect(PixelRect rect, Rgb color) {
  const int x0 = std::max(rect.left, clip_.left), x1 = std::min(rect.right, clip_.right);
  const int y0 = std::max(rect.top, clip_.top), y1 = std::min(rect.bottom, clip_.bottom);
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) put(x, y, color);
  }
}

void Canvas::line(double fx0, double fy0, double fx1, double fy1, Rgb color, int thickness) {
  // Coordinates far outside the image (a value plotted on a clipped axis) are clamped first so
  // the integer walk below stays short; the clamp moves only invisible parts of the line.
  constexpr double kFar = 4 * kMaxSide;
  if (!std::isfinite(fx0) || !std::isfinite(fy0) || !std::isfinite(fx1) || !std::isfinite(fy1)) {
    return;
  }
  auto clamp = [&](double v) { return std::clamp(v, -kFar, kFar); };
  int x0 = static_cast<int>(std::lround(clamp(fx0))),
      y0 = static_cast<int>(std::lround(clamp(fy0)));
  const int x1 = static_cast<int>(std::lround(clamp(fx1)));
  const int y1 = static_cast<int>(std::lround(clamp(fy1)));
  const int lo = -(thickness - 1) / 2;  // brush offsets [lo, lo + thickness)
  const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
  const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  while (true) {
    fill_rect({x0 + lo, y0 + lo, x0 + lo + thickness - 1, y0 + lo + thickness - 1}, color);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

void Canvas::hline_dashed(int x0, int x1, int y, Rgb color, int dash) {
  for (int x = std::min(x0, x1); x <= std::max(x0, x1); ++x) {
    if (((x - x0) / dash) % 2 == 0) put(x, y, color);
  }
}

void Canvas::vline_dashed(int x, int y0, int y1, Rgb color, int dash) {
  for (int y = std::min(y0, y1); y <= std::max(y0, y1); ++y) {
    if (((y - y0) / dash) % 2 == 0) put(x, y, color);
  }
}

void Canvas::disc(double cx, double cy, double radius, Rgb color) {
  const int x0 = static_cast<int>(std::floor(cx - radius)),
            x1 = static_cast<int>(std::ceil(cx + radius));
  const int y0 = static_cast<int>(std::floor(cy - radius)),
            y1 = static_cast<int>(std::ceil(cy + radius));
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= radius * radius + 0.25) put(x, y, color);
    }
  }
}

void Canvas::text(int x, int y, const std::string& s, Rgb color, int scale) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto& columns = glyph(s[i]);
    const int gx = x + static_cast<int>(i) * kCellWidth * scale;
    for (int c = 0; c < kGlyphWidth; ++c) {
      for (int r = 0; r < kGlyphHeight; ++r) {
        if ((columns[c] >> r) & 1) {
          fill_rect(
              {gx + c * scale, y + r * scale, gx + (c + 1) * scale - 1, y + (r + 1) * scale - 1},
              color);
        }
      }
    }
  }
}

int Canvas::text_width(const std::string& s, int scale) {
  // The last cell's blank column is not part of the text.
  return s.empty() ? 0 : (static_cast<int>(s.size()) * kCellWidth - 1) * scale;
}

int Canvas::text_height(int scale) {
  return (kGlyphHeight - 1) * scale;
}  // cap height

void Canvas::write_png(const std::string& path) const {
  // libpng's simplified API: no setjmp/longjmp crossing C++ frames, errors come back as text.
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width_);
  image.height = static_cast<png_uint_32>(height_);
  image.format = PNG_FORMAT_RGB;
  if (png_image_write_to_file(&image, path.c_str(), 0, pixels_.data(), width_ * 3, nullptr) == 0) {
    const std::string message = image.message;
    png_image_free(&image);
    throw std::runtime_error("cannot write PNG '" + path + "': " + message);
  }
}

}  // namespace qat::train
