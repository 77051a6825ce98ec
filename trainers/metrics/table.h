// A small aligned text table for run summaries and the before/after table of the default job:
//
//   Eval after 300 steps
//   model                        eval loss  perplexity  delta vs float
//   ------------------------------------------------------------------
//   float                            2.731       15.35               -
//   QAT int4                         2.801       16.46          +0.070
//
// Text cells are left-aligned, numbers right-aligned with the column's format; NaN prints "-".
// to_markdown() renders the same table for docs.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace qat::train {

struct NumberFormat {
  enum class Style { kFixed, kScientific, kPercent, kInteger };
  Style style = Style::kFixed;
  int decimals = 3;
  bool plus_sign = false;  // "+0.070" for deltas

  static NumberFormat fixed(int decimals) { return {Style::kFixed, decimals, false}; }
  static NumberFormat scientific(int decimals) { return {Style::kScientific, decimals, false}; }
  // 0.05 -> "5.0%" with decimals = 1.
  static NumberFormat percent(int decimals) { return {Style::kPercent, decimals, false}; }
  static NumberFormat integer() { return {Style::kInteger, 0, false}; }
  NumberFormat with_sign() const {
    NumberFormat f = *this;
    f.plus_sign = true;
    return f;
  }
  std::string format(double value) const;
};

// A text or a number; converts implicitly so rows read {"float", 2.731, 15.35}.
struct Cell {
  Cell(std::string text) : text(std::move(text)) {}
  Cell(const char* text) : text(text) {}
  template <typename T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
  Cell(T number) : number(static_cast<double>(number)) {}
  std::string text;
  std::optional<double> number;
};

class Table {
 public:
  enum class Align { kAuto, kLeft, kRight };  // kAuto: right if the column holds a number

  explicit Table(std::string title = "") : title_(std::move(title)) {}

  Table& add_column(std::string header, NumberFormat format = {}, Align align = Align::kAuto);
  // Throws std::invalid_argument if the row's length differs from the number of columns.
  Table& add_row(std::vector<Cell> cells);
  // A rule of dashes between row groups (text only; markdown has no such row).
  Table& add_separator();

  // Title line (if any), header, a dashed rule as wide as the table, the rows; columns two spaces
  // apart, no trailing spaces, every line ending in '\n'.
  std::string to_text() const;
  // A GitHub-flavoured markdown table ("**title**" and a blank line first if there is a title).
  std::string to_markdown() const;

 private:
  struct Column {
    std::string header;
    NumberFormat format;
    Align align;
  };
  std::string cell_text(const Cell& cell, std::size_t column) const;
  bool right_aligned(std::size_t column) const;

  std::string title_;
  std::vector<Column> columns_;
  std::vector<std::vector<Cell>> rows_;  // an empty row is a separator
};

}  // namespace qat::train
