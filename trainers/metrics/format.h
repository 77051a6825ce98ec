// Short human-readable numbers for progress lines, tables and plots: durations (3m12s, 1h02m),
// byte sizes in binary units (1.2 GiB), rates with SI prefixes (1.8k tok/s) and plain fixed /
// scientific numbers. Non-finite inputs print as "nan" / "inf" / "-inf" (durations: "?"), never
// as garbage, so a diverging run still prints a readable line.
#pragma once

#include <string>

namespace qat::train {

// "0.4s", "9.9s", "42s", "3m12s", "1h02m", "2d03h"; negative or non-finite: "?".
std::string format_duration(double seconds);

// Binary units, three significant digits at most: "512 B", "1.0 KiB", "12.3 MiB", "123 MiB",
// "1.2 GiB". Negative or non-finite: "?".
std::string format_bytes(double bytes);

// SI prefixes (k, M, G, T) then the unit: "0.52 it/s", "950 tok/s", "1.8k tok/s", "12.3M tok/s".
// An empty unit gives just the number ("1.8k").
std::string format_rate(double per_second, const std::string& unit);

// printf("%.*f") and printf("%.*e") with "nan" / "inf" for non-finite values:
// format_fixed(2.7312, 3) == "2.731", format_scientific(1.9e-5, 1) == "1.9e-05".
std::string format_fixed(double value, int decimals);
std::string format_scientific(double value, int decimals);

}  // namespace qat::train
