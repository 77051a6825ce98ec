// Golden strings of the human-readable formatters used by the progress bar, tables and plots.
#include <cmath>
#include <limits>

#include "tests/support/catch_torch.h"
#include "trainers/metrics/format.h"

using namespace qat::train;

TEST_CASE("Durations print as seconds, m/s, h/m and d/h", "[metrics][format]") {
  CHECK(format_duration(0) == "0.0s");
  CHECK(format_duration(0.44) == "0.4s");
  CHECK(format_duration(9.94) == "9.9s");
  CHECK(format_duration(9.96) == "10s");
  CHECK(format_duration(42.4) == "42s");
  CHECK(format_duration(59.6) == "1m00s");
  CHECK(format_duration(192) == "3m12s");
  CHECK(format_duration(3599.4) == "59m59s");
  CHECK(format_duration(3600) == "1h00m");
  CHECK(format_duration(3720) == "1h02m");
  CHECK(format_duration(86399) == "1d00h");
  CHECK(format_duration(2 * 86400 + 3 * 3600) == "2d03h");
  CHECK(format_duration(-1) == "?");
  CHECK(format_duration(std::nan("")) == "?");
  CHECK(format_duration(std::numeric_limits<double>::infinity()) == "?");
}

TEST_CASE("Byte sizes use binary units with three significant digits", "[metrics][format]") {
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(999) == "999 B");
  CHECK(format_bytes(1000) == "1.0 KiB");
  CHECK(format_bytes(1536) == "1.5 KiB");
  CHECK(format_bytes(12.3 * 1024 * 1024) == "12.3 MiB");
  CHECK(format_bytes(123.4 * 1024 * 1024) == "123 MiB");
  CHECK(format_bytes(1023.9 * 1024 * 1024) == "1.0 GiB");
  CHECK(format_bytes(1.2 * 1024 * 1024 * 1024) == "1.2 GiB");
  CHECK(format_bytes(3.0 * 1024 * 1024 * 1024 * 1024) == "3.0 TiB");
  CHECK(format_bytes(-5) == "?");
}

TEST_CASE("Rates use SI prefixes and the unit", "[metrics][format]") {
  CHECK(format_rate(0.523, "it/s") == "0.52 it/s");
  CHECK(format_rate(5.25, "it/s") == "5.2 it/s");
  CHECK(format_rate(950, "tok/s") == "950 tok/s");
  CHECK(format_rate(999.7, "tok/s") == "1.0k tok/s");
  CHECK(format_rate(1834, "tok/s") == "1.8k tok/s");
  CHECK(format_rate(12.34e6, "tok/s") == "12.3M tok/s");
  CHECK(format_rate(250e9, "") == "250G");
  CHECK(format_rate(std::nan(""), "tok/s") == "nan tok/s");
}

TEST_CASE("Fixed and scientific numbers match printf and spell out non-finite values",
          "[metrics][format]") {
  CHECK(format_fixed(2.73149, 3) == "2.731");
  CHECK(format_fixed(-0.5, 1) == "-0.5");
  CHECK(format_scientific(1.9e-5, 1) == "1.9e-05");
  CHECK(format_fixed(std::nan(""), 3) == "nan");
  CHECK(format_scientific(-std::numeric_limits<double>::infinity(), 2) == "-inf");
  CHECK_THROWS_AS(format_fixed(1.0, -1), std::invalid_argument);
}
