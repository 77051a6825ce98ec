// A 5x7 bitmap font for ASCII 32..126 (plus an eighth row for the descenders of g, j, p, q, y),
// enough to label plot axes without a font library. Each glyph is 5 column bytes, bit 0 the top
// row (the layout of the classic LCD fonts). Characters are drawn in 6x9 cells.
#pragma once

#include <array>
#include <cstdint>

namespace qat::train {

constexpr int kGlyphWidth = 5;
constexpr int kGlyphHeight = 8;  // 7 rows above the baseline, 1 descender row
constexpr int kCellWidth = 6;
constexpr int kCellHeight = 9;

// The columns of `c`; characters outside 32..126 get the glyph of '?'.
const std::array<uint8_t, kGlyphWidth>& glyph(char c);

}  // namespace qat::train
