// TensorBoard event files: the CRC-32C against RFC 3720's test vectors, the TFRecord framing,
// and the files read back by the tensorboard package itself (tests/ref/tensorboard_read.py).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/metrics/tensorboard.h"

namespace fs = std::filesystem;
using namespace qat::train;

namespace {

Record record(int64_t step, const std::string& kind, nlohmann::json fields) {
  Record r;
  r.step = step;
  r.kind = kind;
  r.fields = std::move(fields);
  return r;
}

nlohmann::json read_back(const std::string& dir) {
  const std::string out = dir + "/read.json";
  REQUIRE(qat::test::run_python("tensorboard_read.py", {dir, out}) == 0);
  std::ifstream in(out);
  return nlohmann::json::parse(in);
}

uint32_t le32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(s[at + i]);
  return v;
}

}  // namespace

TEST_CASE("crc32c matches RFC 3720's test vectors, and records are framed as TFRecords",
          "[metrics]") {
  CHECK(crc32c("123456789") == 0xe3069283u);
  CHECK(crc32c(std::string(32, '\0')) == 0x8a9136aau);
  CHECK(crc32c(std::string(32, '\xff')) == 0x62a8ab43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  CHECK(crc32c(ascending) == 0x46dd794eu);
  CHECK(crc32c("") == 0u);
  const uint32_t c = crc32c("abc");
  CHECK(masked_crc32c("abc") == static_cast<uint32_t>(((c >> 15) | (c << 17)) + 0xa282ead8u));

  const std::string rec = tf_record("payload");
  REQUIRE(rec.size() == 8 + 4 + 7 + 4);
  CHECK(rec.substr(0, 8) == std::string("\x07\0\0\0\0\0\0\0", 8));
  CHECK(le32(rec, 8) == masked_crc32c(rec.substr(0, 8)));
  CHECK(rec.substr(12, 7) == "payload");
  CHECK(le32(rec, 19) == masked_crc32c("payload"));
}

TEST_CASE("the tensorboard package reads our scalars back, and a rewrite replaces the old file",
          "[metrics]") {
  const std::string dir = qat::test::temp_dir() + "/tb";
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto w = TensorBoardWriter::create(dir, {record(0, "eval", {{"loss", 3.25}, {"tokens", 4058}}),
                                           record(1, "train", {{"loss", 3.5}, {"lr", 1e-5}})});
  w.write(record(2, "train", {{"loss", 3.125}, {"lr", 2e-5}, {"note", "text"}, {"bad", nan}}));
  w.write(record(3, "train", {{"note", "no numbers"}}));  // nothing to write
  w.write(record(1234567890123, "eval", {{"loss", -0.1}}));

  const auto j = read_back(dir);
  CHECK(j["files"] == 1);
  const auto& s = j["scalars"];
  CHECK(s.size() == 4);  // eval/loss, eval/tokens, train/loss, train/lr; no note, no NaN
  CHECK(s["train/loss"] == nlohmann::json::parse("[[1, 3.5], [2, 3.125]]"));
  CHECK(s["eval/tokens"] == nlohmann::json::parse("[[0, 4058.0]]"));
  REQUIRE(s["train/lr"].size() == 2);
  CHECK(s["train/lr"][0][1].get<double>() == static_cast<double>(1e-5f));  // float32, exactly
  CHECK(s["eval/loss"][1][0] == 1234567890123);
  CHECK(s["eval/loss"][1][1].get<double>() == static_cast<double>(-0.1f));
  CHECK_FALSE(s.contains("train/bad"));

  // Resume: a new writer replays the kept history into a fresh file; the old one is gone, so
  // no step appears twice.
  w = TensorBoardWriter::create(dir, {record(1, "train", {{"loss", 3.5}})});
  w.write(record(2, "train", {{"loss", 2.75}}));
  const auto k = read_back(dir);
  CHECK(k["files"] == 1);
  CHECK(k["scalars"].size() == 1);
  CHECK(k["scalars"]["train/loss"] == nlohmann::json::parse("[[1, 3.5], [2, 2.75]]"));
}

TEST_CASE("a corrupted event file is refused by the reader's CRC check", "[metrics]") {
  const std::string dir = qat::test::temp_dir() + "/tb";
  std::string path;
  {
    auto w = TensorBoardWriter::create(dir);
    w.write(record(1, "train", {{"loss", 1.0}}));
    path = w.path();
  }
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(fs::file_size(path) - 6));  // inside the last payload
  f.put('\x55');
  f.close();
  CHECK(qat::test::run_python("tensorboard_read.py", {dir, dir + "/read.json"}) != 0);
}
