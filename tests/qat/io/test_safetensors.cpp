// safetensors writer and reader round trips (bit-exact, every dtype, sharded) and the writer's
// layout rules (sort order, 8-byte padded header, __metadata__).
#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "qat/io/safetensors_torch.h"
#include "tests/qat/io/io_test_util.h"

namespace io = qat::io;
using qat::test::io::pattern_tensor;
using qat::test::io::read_file;
using qat::test::io::same_bytes;

namespace {

using Named = std::vector<std::pair<std::string, at::Tensor>>;

// Every dtype the format and libtorch share, plus a scalar, an empty tensor and a strided view.
Named all_dtypes() {
  const std::vector<std::pair<at::ScalarType, std::vector<int64_t>>> cases = {
      {at::kDouble, {3, 5}},        {at::kFloat, {4, 4}},
      {at::kHalf, {2, 3, 4}},       {at::kBFloat16, {7}},
      {at::kFloat8_e4m3fn, {5, 3}}, {at::kFloat8_e5m2, {9}},
      {at::kLong, {2, 2}},          {at::kInt, {3}},
      {at::kShort, {2, 5}},         {at::kChar, {11}},
      {at::kByte, {4, 4}},          {at::kBool, {3, 3}},
      {at::kUInt16, {6}},           {at::kUInt32, {2, 3}},
      {at::kUInt64, {3}},           {at::kFloat8_e8m0fnu, {5}},
      {at::kFloat8_e4m3fnuz, {4}},  {at::kFloat8_e5m2fnuz, {4}},
      {at::kComplexFloat, {2}},     {at::kFloat, {}},
      {at::kHalf, {0, 4}}};
  Named out;
  for (size_t k = 0; k < cases.size(); ++k) {
    out.emplace_back("t" + std::to_string(k) + "." + std::string(c10::toString(cases[k].first)),
                     pattern_tensor(static_cast<int>(k), cases[k].first, cases[k].second));
  }
  out.emplace_back("strided", pattern_tensor(99, at::kFloat, {6, 4}).t());  // non-contiguous
  return out;
}

}  // namespace

TEST_CASE("safetensors round trip of every dtype is bit-exact", "[io][safetensors]") {
  const std::string dir = qat::test::temp_dir();
  const std::string path = dir + "/all.safetensors";
  const Named tensors = all_dtypes();
  io::save_safetensors(path, tensors, {{"source", "qat"}, {"format", "pt"}});

  const io::SafetensorsFile f = io::SafetensorsFile::open(path);
  REQUIRE(f.names().size() == tensors.size());
  CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"source", "qat"}});
  for (const auto& [name, t] : tensors) {
    CAPTURE(name);
    REQUIRE(f.contains(name));
    CHECK(f.dtype(name) == t.scalar_type());
    CHECK(f.shape(name) == t.sizes().vec());
    CHECK(same_bytes(f.tensor(name), t.contiguous()));
  }
  const auto all = io::load_safetensors(path);
  CHECK(all.size() == tensors.size());
  CHECK(same_bytes(all.at("strided"), tensors.back().second.contiguous()));
}

TEST_CASE("safetensors writer sorts by dtype then name and pads the header to 8 bytes",
          "[io][safetensors]") {
  const std::string path = qat::test::temp_dir() + "/order.safetensors";
  io::save_safetensors(path, {{"b", at::zeros({3}, at::kHalf)},
                              {"a", at::zeros({3}, at::kHalf)},
                              {"z", at::zeros({1}, at::kDouble)},
                              {"m", at::zeros({5}, at::kByte)}});
  const std::string bytes = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  const std::string json = bytes.substr(8, n);
  // Compact JSON, __metadata__ first, then dtype descending (F64 > F16 > U8), then name.
  CHECK(json.rfind("{\"__metadata__\":{\"format\":\"pt\"},\"z\":{\"dtype\":\"F64\",\"shape\":[1],"
                   "\"data_offsets\":[0,8]},\"a\":",
                   0) == 0);
  CHECK(json.find("\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[14,20]}") !=
        std::string::npos);
  CHECK(json.find("\"m\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[20,25]}") !=
        std::string::npos);
  // Padding is spaces only (at most 7 of them).
  const size_t close = json.rfind('}');
  CHECK(json.size() - close - 1 < 8);
  CHECK(json.find_first_not_of(' ', close + 1) == std::string::npos);
  CHECK(bytes.size() == 8 + n + 25);
}

TEST_CASE("safetensors reads are zero-copy views that outlive the reader and never write the file",
          "[io][safetensors]") {
  const std::string path = qat::test::temp_dir() + "/view.safetensors";
  io::save_safetensors(path, {{"w", at::arange(8, at::kFloat)}});
  const std::string before = read_file(path);
  at::Tensor w, w2;
  {
    const io::SafetensorsFile f = io::SafetensorsFile::open(path);
    w = f.tensor("w");
    w2 = f.tensor("w");
    // Both views alias the same mapped bytes.
    CHECK(w.data_ptr() == w2.data_ptr());
  }
  CHECK(w[3].item<float>() == 3.0f);  // the mapping is still alive
  w.mul_(2);                          // copy-on-write: allowed, private to this process
  CHECK(w2[3].item<float>() == 6.0f);
  CHECK(read_file(path) == before);
}

TEST_CASE("safetensors sharded writer splits by size and the checkpoint reader joins the shards",
          "[io][safetensors]") {
  const std::string dir = qat::test::temp_dir() + "/ckpt";
  const Named tensors = all_dtypes();
  const auto files = io::save_safetensors_sharded(dir, tensors, 64);
  REQUIRE(files.size() >= 4);
  CHECK(files.back() == io::kSafetensorsIndexName);
  const size_t n = files.size() - 1;
  char first[64];
  std::snprintf(first, sizeof(first), "model-00001-of-%05zu.safetensors", n);
  CHECK(files.front() == first);

  const auto index = qat::test::io::read_json(dir + "/" + io::kSafetensorsIndexName);
  uint64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.numel() * t.element_size();
  CHECK(index["metadata"]["total_size"].get<uint64_t>() == total);
  CHECK(index["weight_map"].size() == tensors.size());
  // Every shard but one holding an oversized tensor respects the limit.
  for (size_t k = 0; k < n; ++k) {
    const io::SafetensorsFile f = io::SafetensorsFile::open(dir + "/" + files[k]);
    uint64_t bytes = 0;
    for (const auto& name : f.names()) bytes += f.info(name).nbytes();
    CHECK((bytes <= 64 || f.names().size() == 1));
  }
  for (const std::string& where : {dir, dir + "/" + io::kSafetensorsIndexName}) {
    CAPTURE(where);
    const io::SafetensorsCheckpoint c = io::SafetensorsCheckpoint::open(where);
    REQUIRE(c.names().size() == tensors.size());
    for (const auto& [name, t] : tensors) {
      CAPTURE(name);
      CHECK(same_bytes(c.tensor(name), t.contiguous()));
    }
    CHECK(c.metadata().at("format") == "pt");
  }
  // A small checkpoint is one model.safetensors without an index, as save_pretrained writes it.
  const std::string small = qat::test::temp_dir();
  CHECK(io::save_safetensors_sharded(small, {{"x", at::ones({2})}}, 1 << 20) ==
        std::vector<std::string>{io::kSafetensorsSingleName});
  CHECK(io::load_safetensors(small).at("x").equal(at::ones({2})));
}

TEST_CASE("safetensors dtypes without a libtorch type are a clear error", "[io][safetensors]") {
  const std::string path = qat::test::temp_dir() + "/f4.safetensors";
  const std::string json = R"({"x":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}})";
  qat::test::io::write_file(path, qat::test::io::safetensors_bytes(json, 2));
  const io::SafetensorsFile f = io::SafetensorsFile::open(path);  // the header itself is valid
  CHECK(f.info("x").nbytes() == 2);
  REQUIRE_THROWS_WITH(f.tensor("x"),
                      Catch::Contains("unsupported dtype F4") && Catch::Contains(path));
  REQUIRE_THROWS_WITH(f.tensor("nope"), Catch::Contains("no tensor named \"nope\""));
}

TEST_CASE("safetensors writer rejects what the format cannot hold", "[io][safetensors]") {
  const std::string dir = qat::test::temp_dir();
  REQUIRE_THROWS_WITH(
      io::save_safetensors(dir + "/a", {{"x", at::ones({1})}, {"x", at::ones({1})}}),
      Catch::Contains("duplicate tensor name \"x\""));
  REQUIRE_THROWS_WITH(io::save_safetensors(dir + "/b", {{"__metadata__", at::ones({1})}}),
                      Catch::Contains("reserved"));
  REQUIRE_THROWS_WITH(io::save_safetensors(dir + "/c", {{"x", at::ones({1})}}, {{"format", "np"}}),
                      Catch::Contains("\"format\" must be \"pt\""));
  REQUIRE_THROWS_WITH(io::save_safetensors(dir + "/d", {{"x", at::ones({1}, at::kComplexDouble)}}),
                      Catch::Contains("unsupported dtype"));
}
