// metrics.jsonl: records round-trip, a resumed run's file equals the uninterrupted run's byte for
// byte, a torn last line (crash mid-write) is skipped with a warning, other damage is an error.
#include <cmath>
#include <fstream>

#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/metrics/metrics_log.h"

using Catch::Contains;
using nlohmann::json;
using namespace qat::train;

namespace {

std::string slurp(const std::string& path) {
  const std::vector<uint8_t> b = qat::test::read_bytes(path);
  return std::string(b.begin(), b.end());
}

void spit(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

// A run's metrics: train every step with a loss that depends on the step, eval every 4 steps.
void log_steps(MetricsWriter& w, int64_t from, int64_t to) {
  for (int64_t s = from; s <= to; ++s) {
    w.write(s, "train", {{"loss", 3.0 / (1 + 0.1 * s)}, {"lr", 1e-4}, {"tokens", 512 * s}});
    if (s % 4 == 0) w.write(s, "eval", {{"loss", 3.1 / (1 + 0.1 * s)}, {"split", "val"}});
  }
}

}  // namespace

TEST_CASE("Metrics records round-trip through metrics.jsonl", "[metrics][jsonl]") {
  const std::string path = qat::test::temp_dir() + "/metrics.jsonl";
  {
    MetricsWriter w = MetricsWriter::create(path);
    w.write(1, "train", {{"loss", 2.5}, {"lr", 1.9e-5}, {"note", "warmup"}});
    w.write(2, "train", {{"loss", std::nan("")}});
    w.write(2, "eval", json::object());
    // Each line is on disk as soon as write returns (flushed), before the writer closes.
    CHECK(slurp(path) ==
          "{\"step\":1,\"kind\":\"train\",\"loss\":2.5,\"lr\":1.9e-05,\"note\":\"warmup\"}\n"
          "{\"step\":2,\"kind\":\"train\",\"loss\":null}\n"
          "{\"step\":2,\"kind\":\"eval\"}\n");
  }
  const MetricsFile f = read_metrics(path);
  CHECK(f.warning.empty());
  REQUIRE(f.records.size() == 3);
  CHECK(f.records[0].step == 1);
  CHECK(f.records[0].kind == "train");
  CHECK(f.records[0].number("loss") == 2.5);
  CHECK(f.records[0].number("lr") == 1.9e-5);
  CHECK(f.records[0].fields["note"] == "warmup");
  CHECK(std::isnan(f.records[0].number("note")));  // a string is not a number
  CHECK(std::isnan(f.records[1].number("loss")));  // NaN was written as null
  CHECK(std::isnan(f.records[2].number("missing")));
  CHECK(f.records[2].kind == "eval");
}

TEST_CASE("Resuming drops later records so the file equals an uninterrupted run's",
          "[metrics][jsonl]") {
  const std::string dir = qat::test::temp_dir();
  const std::string full = dir + "/full.jsonl", resumed = dir + "/resumed.jsonl";
  {
    MetricsWriter w = MetricsWriter::create(full);
    log_steps(w, 1, 20);
  }
  {
    // The interrupted run got to step 13 (and a torn half line) but its last checkpoint is 8.
    MetricsWriter w = MetricsWriter::create(resumed);
    log_steps(w, 1, 13);
  }
  std::ofstream(resumed, std::ios::app) << "{\"step\":14,\"kind\":\"tr";
  {
    MetricsWriter w = MetricsWriter::open(resumed, 8);
    CHECK(w.kept() == 10);    // steps 1..8 and evals at 4, 8
    CHECK(w.dropped() == 6);  // steps 9..13 and the eval at 12
    CHECK_THAT(w.warning(), Contains("torn last line"));
    log_steps(w, 9, 20);
  }
  CHECK(slurp(resumed) == slurp(full));
  const MetricsFile f = read_metrics(resumed);
  CHECK(f.warning.empty());
  CHECK(f.records.size() == 25);
  CHECK(f.records.back().step == 20);
}

TEST_CASE("Opening a metrics file that does not exist starts it", "[metrics][jsonl]") {
  const std::string path = qat::test::temp_dir() + "/new.jsonl";
  {
    MetricsWriter w = MetricsWriter::open(path, 100);
    CHECK(w.kept() == 0);
    CHECK(w.warning().empty());
    w.write(101, "train", {{"loss", 1.0}});
  }
  CHECK(slurp(path) == "{\"step\":101,\"kind\":\"train\",\"loss\":1.0}\n");
}

TEST_CASE("A torn last line is skipped with a warning, damage elsewhere is an error",
          "[metrics][jsonl]") {
  const std::string path = qat::test::temp_dir() + "/m.jsonl";
  const std::string good = "{\"step\":1,\"kind\":\"train\",\"loss\":2.0}\n";
  SECTION("torn last line") {
    spit(path, good + "{\"step\":2,\"kind\":\"train\",\"lo");
    const MetricsFile f = read_metrics(path);
    CHECK(f.records.size() == 1);
    CHECK_THAT(f.warning, Contains("torn last line") && Contains(path + ":2"));
  }
  SECTION("a complete last line without its newline is kept") {
    spit(path, good + "{\"step\":2,\"kind\":\"train\"}");
    const MetricsFile f = read_metrics(path);
    CHECK(f.records.size() == 2);
    CHECK(f.warning.empty());
  }
  SECTION("malformed line in the middle") {
    spit(path, good + "{\"step\":2,\"kind\n" + good);
    CHECK_THROWS_WITH(read_metrics(path), Contains(path + ":2: not valid JSON"));
  }
  SECTION("step missing or not an integer") {
    spit(path, "{\"kind\":\"train\"}\n" + good);
    CHECK_THROWS_WITH(read_metrics(path), Contains(":1: \"step\" must be an integer"));
    spit(path, "{\"step\":1.5,\"kind\":\"train\"}\n" + good);
    CHECK_THROWS_WITH(read_metrics(path), Contains(":1: \"step\" must be an integer"));
  }
  SECTION("kind missing") {
    spit(path, good + "[1, 2]\n" + good);
    CHECK_THROWS_WITH(read_metrics(path), Contains(":2: expected a JSON object"));
    spit(path, "{\"step\":1}\n" + good);
    CHECK_THROWS_WITH(read_metrics(path), Contains(":1: \"kind\" must be a string"));
  }
  SECTION("missing file") {
    CHECK_THROWS_WITH(read_metrics(path + ".nope"), Contains("cannot open metrics file"));
  }
}

TEST_CASE("MetricsWriter rejects fields that would make an ambiguous record", "[metrics][jsonl]") {
  const std::string dir = qat::test::temp_dir();
  MetricsWriter w = MetricsWriter::create(dir + "/m.jsonl");
  CHECK_THROWS_WITH(w.write(1, "train", {{"step", 3}}), Contains("must not contain \"step\""));
  CHECK_THROWS_WITH(w.write(1, "train", json::array({1, 2})), Contains("must be a JSON object"));
  CHECK_THROWS_WITH(MetricsWriter::create(dir + "/no/such/dir/m.jsonl"),
                    Contains("cannot open metrics file"));
}
