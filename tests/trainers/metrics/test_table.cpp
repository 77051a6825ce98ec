// The summary table's exact text and markdown layout.
#include <cmath>

#include "tests/support/catch_torch.h"
#include "trainers/metrics/table.h"

using Catch::Contains;
using namespace qat::train;

namespace {

// The before/after table of the default job.
Table before_after() {
  Table t("int4 weights, group 32: eval after 300 steps");
  t.add_column("model")
      .add_column("eval loss", NumberFormat::fixed(3))
      .add_column("perplexity", NumberFormat::fixed(2))
      .add_column("delta vs float", NumberFormat::fixed(3).with_sign());
  t.add_row({"float", 2.7312, 15.352, std::nan("")});
  t.add_row({"PTQ int4 (round-to-nearest)", 3.0121, 20.331, 0.2809});
  t.add_row({"QAT int4", 2.8014, 16.467, 0.0702});
  return t;
}

}  // namespace

TEST_CASE("Table text layout: left-aligned text, right-aligned numbers, a rule under the header",
          "[metrics][table]") {
  CHECK(before_after().to_text() ==
        "int4 weights, group 32: eval after 300 steps\n"
        "model                        eval loss  perplexity  delta vs float\n"
        "------------------------------------------------------------------\n"
        "float                            2.731       15.35               -\n"
        "PTQ int4 (round-to-nearest)      3.012       20.33          +0.281\n"
        "QAT int4                         2.801       16.47          +0.070\n");
}

TEST_CASE("Table markdown has the same cells and alignment markers", "[metrics][table]") {
  CHECK(before_after().to_markdown() ==
        "**int4 weights, group 32: eval after 300 steps**\n"
        "\n"
        "| model | eval loss | perplexity | delta vs float |\n"
        "|---|---:|---:|---:|\n"
        "| float | 2.731 | 15.35 | - |\n"
        "| PTQ int4 (round-to-nearest) | 3.012 | 20.33 | +0.281 |\n"
        "| QAT int4 | 2.801 | 16.47 | +0.070 |\n");
}

TEST_CASE("Table formats, separators, wide cells and escaping", "[metrics][table]") {
  Table t;
  t.add_column("name", {}, Table::Align::kRight)
      .add_column("share", NumberFormat::percent(1))
      .add_column("lr", NumberFormat::scientific(1))
      .add_column("steps", NumberFormat::integer());
  t.add_row({"a", 0.05, 1.9e-5, 300});
  t.add_separator();
  t.add_row({"b|c", -0.125, 3e-4, 1234567.6});
  CHECK(t.to_text() ==
        "name   share       lr    steps\n"
        "------------------------------\n"
        "   a    5.0%  1.9e-05      300\n"
        "------------------------------\n"
        " b|c  -12.5%  3.0e-04  1234568\n");
  CHECK(t.to_markdown() ==
        "| name | share | lr | steps |\n"
        "|---:|---:|---:|---:|\n"
        "| a | 5.0% | 1.9e-05 | 300 |\n"
        "| b\\|c | -12.5% | 3.0e-04 | 1234568 |\n");
  CHECK_THROWS_WITH(t.add_row({"x", 1.0}), Contains("expected 4 cells (one per column), got 2"));
  CHECK_THROWS_AS(t.add_column("late"), std::logic_error);
}
