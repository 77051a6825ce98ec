// The safetensors reader rejects each class of malformed file with a message that names the
// file, the tensor or field, and what was expected vs found.
#include <catch2/catch.hpp>

#include "qat/io/safetensors.h"
#include "qat/io/safetensors_torch.h"
#include "tests/qat/io/io_test_util.h"

namespace io = qat::io;
using Catch::Contains;
using qat::test::io::safetensors_bytes;

namespace {

void parse_safetensors(const std::string& bytes) {
  (void)io::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                              "bad.safetensors");
}

std::string two_tensors(const std::string& a_offsets, const std::string& b_offsets) {
  return R"({"a":{"dtype":"F32","shape":[2],"data_offsets":)" + a_offsets +
         R"(},"b":{"dtype":"F32","shape":[2],"data_offsets":)" + b_offsets + "}}";
}

}  // namespace

TEST_CASE("safetensors: a valid hand-made file parses (control for the malformed cases)",
          "[io][safetensors][malformed]") {
  const auto bytes = safetensors_bytes(two_tensors("[0,8]", "[8,16]"), 16);
  const auto h =
      io::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x");
  REQUIRE(h.tensors.size() == 2);
  CHECK(h.find("b")->begin == 8);
  CHECK(h.data_start == 8 + two_tensors("[0,8]", "[8,16]").size());
}

TEST_CASE("safetensors: truncated files are rejected", "[io][safetensors][malformed]") {
  REQUIRE_THROWS_WITH(parse_safetensors(""),
                      Contains("bad.safetensors") && Contains("expected at least 8"));
  REQUIRE_THROWS_WITH(parse_safetensors(std::string(5, '\0')), Contains("truncated"));
  const auto full = safetensors_bytes(two_tensors("[0,8]", "[8,16]"), 16);
  REQUIRE_THROWS_WITH(parse_safetensors(full.substr(0, full.size() - 1)),
                      Contains("cover 16 data bytes but the file has 15"));
  REQUIRE_THROWS_WITH(parse_safetensors(full + "x"),
                      Contains("cover 16 data bytes but the file has 17"));
}

TEST_CASE("safetensors: a lying header size is rejected", "[io][safetensors][malformed]") {
  const std::string json = two_tensors("[0,8]", "[8,16]");
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(json, 16, 200'000'000)),
                      Contains("exceeds the limit of 100000000"));
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(json, 0, json.size() + 100)),
                      Contains("runs past the end of the file"));
  // Too short: the JSON is cut and does not parse.
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(json, 16, 10)),
                      Contains("not valid UTF-8 JSON"));
}

TEST_CASE("safetensors: invalid JSON, invalid UTF-8 and a non-object header are rejected",
          "[io][safetensors][malformed]") {
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes("{\"a\":", 0)),
                      Contains("not valid UTF-8 JSON"));
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes("{\"\xff\xfe\":{}}", 0)),
                      Contains("not valid UTF-8 JSON"));
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes("[1,2]   ", 0)),
                      Contains("must be a JSON object"));
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(
                          R"({"a":{"dtype":"F32","shape":[[[1]]],"data_offsets":[0,4]}})", 4)),
                      Contains("nests deeper"));
}

TEST_CASE("safetensors: overlapping offsets are rejected", "[io][safetensors][malformed]") {
  REQUIRE_THROWS_WITH(
      parse_safetensors(safetensors_bytes(two_tensors("[0,8]", "[4,12]"), 12)),
      Contains("tensor \"b\"") && Contains("should begin at 8") && Contains("overlaps"));
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(two_tensors("[0,8]", "[0,8]"), 8)),
                      Contains("overlaps"));
}

TEST_CASE("safetensors: gaps between tensors are rejected", "[io][safetensors][malformed]") {
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(two_tensors("[0,8]", "[12,20]"), 20)),
                      Contains("tensor \"b\"") && Contains("should begin at 8") && Contains("gap"));
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(two_tensors("[4,12]", "[12,20]"), 20)),
                      Contains("tensor \"a\"") && Contains("should begin at 0"));
}

TEST_CASE("safetensors: a byte span that disagrees with dtype x shape is rejected",
          "[io][safetensors][malformed]") {
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(two_tensors("[0,8]", "[8,20]"), 20)),
                      Contains("span 12 bytes, expected 8 for F32 [2]"));
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(two_tensors("[0,8]", "[8,4]"), 8)),
                      Contains("end before they begin"));
  // numel * bytes overflows u64: caught by the checked multiplication.
  const std::string huge =
      R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})";
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(huge, 8)),
                      Contains("no whole byte size"));
  const std::string f4odd = R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})";
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(f4odd, 2)), Contains("partial byte"));
}

TEST_CASE("safetensors: unknown dtypes and bad fields are rejected",
          "[io][safetensors][malformed]") {
  const auto with = [](const std::string& tensor) {
    return safetensors_bytes("{\"a\":" + tensor + "}", 8);
  };
  REQUIRE_THROWS_WITH(
      parse_safetensors(with(R"({"dtype":"F31","shape":[2],"data_offsets":[0,8]})")),
      Contains("tensor \"a\": unknown dtype \"F31\""));
  REQUIRE_THROWS_WITH(parse_safetensors(with(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})")),
                      Contains("dtype: expected a string"));
  REQUIRE_THROWS_WITH(
      parse_safetensors(with(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})")),
      Contains("shape[0]: expected a non-negative integer, found -2"));
  REQUIRE_THROWS_WITH(
      parse_safetensors(with(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})")),
      Contains("shape[0]: expected a non-negative integer, found 2.0"));
  REQUIRE_THROWS_WITH(
      parse_safetensors(
          with(R"({"dtype":"F32","shape":[0,9223372036854775808],"data_offsets":[0,0]})")),
      Contains("exceeds int64"));
  REQUIRE_THROWS_WITH(parse_safetensors(with(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})")),
                      Contains("data_offsets: expected [begin, end]"));
  REQUIRE_THROWS_WITH(parse_safetensors(with(R"({"dtype":"F32","shape":[2]})")),
                      Contains("missing \"data_offsets\""));
  REQUIRE_THROWS_WITH(parse_safetensors(with("7")), Contains("tensor \"a\": expected an object"));
}

TEST_CASE("safetensors: non-string metadata values are rejected", "[io][safetensors][malformed]") {
  REQUIRE_THROWS_WITH(
      parse_safetensors(safetensors_bytes(R"({"__metadata__":{"format":"pt","n":3}})", 0)),
      Contains("__metadata__[\"n\"]: expected a string value, found 3"));
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes(R"({"__metadata__":[1]})", 0)),
                      Contains("expected an object of strings"));
}

TEST_CASE("safetensors: duplicate names are rejected", "[io][safetensors][malformed]") {
  const std::string t = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  REQUIRE_THROWS_WITH(parse_safetensors(safetensors_bytes("{\"a\":" + t + ",\"a\":" + t + "}", 8)),
                      Contains("duplicate key \"a\""));
  REQUIRE_THROWS_WITH(
      parse_safetensors(safetensors_bytes(
          R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8)),
      Contains("duplicate key \"dtype\""));
}

TEST_CASE("safetensors: opening a malformed file names the path", "[io][safetensors][malformed]") {
  const std::string path = qat::test::temp_dir() + "/broken.safetensors";
  qat::test::io::write_file(path, safetensors_bytes(two_tensors("[0,8]", "[4,12]"), 12));
  REQUIRE_THROWS_WITH(io::SafetensorsFile::open(path), Contains(path) && Contains("overlaps"));
  REQUIRE_THROWS_WITH(io::SafetensorsFile::open(path + ".missing"), Contains("cannot open"));
  const std::string dir = qat::test::temp_dir();
  REQUIRE_THROWS_WITH(io::SafetensorsCheckpoint::open(dir), Contains("found neither"));
  qat::test::io::write_file(dir + "/model.safetensors.index.json",
                            R"({"weight_map":{"w":"../../etc/passwd"}})");
  REQUIRE_THROWS_WITH(io::SafetensorsCheckpoint::open(dir),
                      Contains("expected a file name in the index's directory"));
}
