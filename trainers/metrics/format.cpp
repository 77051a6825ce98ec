#include "trainers/metrics/format.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace qat::train {

namespace {

std::string printf_string(const char* fmt, double value, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, precision, value);
  return buf;
}

std::string non_finite(double value) {
  if (std::isnan(value)) return "nan";
  return value > 0 ? "inf" : "-inf";
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  char buf[48];
  if (seconds < 9.95) {
    std::snprintf(buf, sizeof(buf), "%.1fs", seconds);
    return buf;
  }
  const long long s = std::llround(seconds);
  if (s < 60) {
    std::snprintf(buf, sizeof(buf), "%llds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", s / 60, s % 60);
  } else if (const long long m = std::llround(seconds / 60); m < 24 * 60) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", m / 60, m % 60);
  } else {
    const long long h = std::llround(seconds / 3600);
    std::snprintf(buf, sizeof(buf), "%lldd%02lldh", h / 24, h % 24);
  }
  return buf;
}

std::string format_bytes(double bytes) {
  if (!std::isfinite(bytes) || bytes < 0) return "?";
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  constexpr int kLast = 5;
  if (bytes < 1000) return printf_string("%.*f", bytes, 0) + " B";
  double v = bytes;
  int unit = 0;
  // Move up a unit while the printed value would need four digits ("1000 KiB" -> "1.0 MiB").
  while (unit < kLast && (v >= 999.5 || (unit == 0 && v >= 1000))) {
    v /= 1024;
    ++unit;
  }
  const int decimals = v < 99.95 ? 1 : 0;
  return printf_string("%.*f", v, decimals) + " " + kUnits[unit];
}

std::string format_rate(double per_second, const std::string& unit) {
  const std::string suffix = unit.empty() ? "" : " " + unit;
  if (!std::isfinite(per_second)) return non_finite(per_second) + suffix;
  static const char* const kPrefixes[] = {"", "k", "M", "G", "T"};
  constexpr int kLast = 4;
  const double sign = per_second < 0 ? -1 : 1;
  double v = std::fabs(per_second);
  int prefix = 0;
  // Three significant digits at most; move up a prefix when rounding would print "1000".
  while (prefix < kLast && v >= 999.5) {
    v /= 1000;
    ++prefix;
  }
  const int decimals = v < 0.995 ? 2 : (v < 99.95 ? 1 : 0);
  return printf_string("%.*f", sign * v, decimals) + kPrefixes[prefix] + suffix;
}

std::string format_fixed(double value, int decimals) {
  if (decimals < 0 || decimals > 30) {
    throw std::invalid_argument("format_fixed: decimals must be in [0, 30], got " +
                                std::to_string(decimals));
  }
  if (!std::isfinite(value)) return non_finite(value);
  return printf_string("%.*f", value, decimals);
}

std::string format_scientific(double value, int decimals) {
  if (decimals < 0 || decimals > 30) {
    throw std::invalid_argument("format_scientific: decimals must be in [0, 30], got " +
                                std::to_string(decimals));
  }
  if (!std::isfinite(value)) return non_finite(value);
  return printf_string("%.*e", value, decimals);
}

}  // namespace qat::train
