#include "trainers/metrics/table.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "trainers/metrics/format.h"

namespace qat::train {

std::string NumberFormat::format(double value) const {
  if (std::isnan(value)) return "-";
  std::string s;
  switch (style) {
    case Style::kFixed:
      s = format_fixed(value, decimals);
      break;
    case Style::kScientific:
      s = format_scientific(value, decimals);
      break;
    case Style::kPercent:
      s = format_fixed(value * 100, decimals) + "%";
      break;
    case Style::kInteger:
      s = format_fixed(std::round(value), 0);
      break;
  }
  if (plus_sign && (value > 0 || (value == 0 && !std::signbit(value)))) s = "+" + s;
  return s;
}

Table& Table::add_column(std::string header, NumberFormat format, Align align) {
  if (!rows_.empty()) throw std::logic_error("Table::add_column: add columns before rows");
  columns_.push_back({std::move(header), format, align});
  return *this;
}

Table& Table::add_row(std::vector<Cell> cells) {
  if (cells.size() != columns_.size()) {
    throw std::invalid_argument("Table::add_row: expected " + std::to_string(columns_.size()) +
                                " cells (one per column), got " + std::to_string(cells.size()));
  }
  rows_.push_back(std::move(cells));
  return *this;
}

Table& Table::add_separator() {
  rows_.emplace_back();
  return *this;
}

std::string Table::cell_text(const Cell& cell, std::size_t column) const {
  return cell.number ? columns_[column].format.format(*cell.number) : cell.text;
}

bool Table::right_aligned(std::size_t column) const {
  switch (columns_[column].align) {
    case Align::kLeft:
      return false;
    case Align::kRight:
      return true;
    case Align::kAuto:
      break;
  }
  return std::any_of(rows_.begin(), rows_.end(), [&](const std::vector<Cell>& row) {
    return !row.empty() && row[column].number.has_value();
  });
}

std::string Table::to_text() const {
  const std::size_t n = columns_.size();
  std::vector<std::size_t> width(n);
  for (std::size_t c = 0; c < n; ++c) {
    width[c] = columns_[c].header.size();
    for (const auto& row : rows_) {
      if (!row.empty()) width[c] = std::max(width[c], cell_text(row[c], c).size());
    }
  }
  std::size_t total = 0;
  for (std::size_t c = 0; c < n; ++c) total += width[c] + (c ? 2 : 0);

  auto line = [&](const std::vector<std::string>& texts) {
    std::string s;
    for (std::size_t c = 0; c < n; ++c) {
      if (c) s += "  ";
      const std::string pad(width[c] - texts[c].size(), ' ');
      s += right_aligned(c) ? pad + texts[c] : texts[c] + pad;
    }
    s.erase(s.find_last_not_of(' ') + 1);
    return s + "\n";
  };

  std::string out;
  if (!title_.empty()) out += title_ + "\n";
  std::vector<std::string> texts(n);
  for (std::size_t c = 0; c < n; ++c) texts[c] = columns_[c].header;
  out += line(texts);
  const std::string rule = std::string(total, '-') + "\n";
  out += rule;
  for (const auto& row : rows_) {
    if (row.empty()) {
      out += rule;
      continue;
    }
    for (std::size_t c = 0; c < n; ++c) texts[c] = cell_text(row[c], c);
    out += line(texts);
  }
  return out;
}

std::string Table::to_markdown() const {
  auto escape = [](const std::string& s) {
    std::string e;
    for (char ch : s) {
      if (ch == '|') e += '\\';
      e += ch;
    }
    return e;
  };
  std::string out;
  if (!title_.empty()) out += "**" + title_ + "**\n\n";
  std::string header = "|";
  std::string rule = "|";
  for (std::size_t c = 0; c < columns_.size(); ++c) {
    header += " " + escape(columns_[c].header) + " |";
    rule += right_aligned(c) ? "---:|" : "---|";
  }
  out += header + "\n" + rule + "\n";
  for (const auto& row : rows_) {
    if (row.empty()) continue;
    std::string s = "|";
    for (std::size_t c = 0; c < columns_.size(); ++c)
      s += " " + escape(cell_text(row[c], c)) + " |";
    out += s + "\n";
  }
  return out;
}

}  // namespace qat::train
