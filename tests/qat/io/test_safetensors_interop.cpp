// safetensors interop with the reference Python package (tests/ref/safetensors_io_ref.py): our
// files are byte-identical to safetensors.torch.save and read back identically there, and we
// read the files its torch and numpy writers produce bit for bit.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "qat/io/safetensors_torch.h"
#include "tests/qat/io/io_test_util.h"

namespace io = qat::io;
using qat::test::io::pattern_tensor;
using qat::test::io::same_bytes;

namespace {

using Named = std::vector<std::pair<std::string, at::Tensor>>;

// The twin of TORCH_SET in safetensors_io_ref.py (same names, dtypes, shapes, pattern index).
Named torch_set() {
  const std::vector<std::tuple<std::string, at::ScalarType, std::vector<int64_t>>> cases = {
      {"a.f64", at::kDouble, {3, 5}},
      {"b.f32", at::kFloat, {4, 4}},
      {"c.f16", at::kHalf, {2, 3, 4}},
      {"d.bf16", at::kBFloat16, {7}},
      {"e.f8_e4m3", at::kFloat8_e4m3fn, {5, 3}},
      {"f.f8_e5m2", at::kFloat8_e5m2, {9}},
      {"g.i64", at::kLong, {2, 2}},
      {"h.i32", at::kInt, {3}},
      {"i.i16", at::kShort, {2, 5}},
      {"j.i8", at::kChar, {11}},
      {"k.u8", at::kByte, {4, 4}},
      {"l.bool", at::kBool, {3, 3}},
      {"m.u16", at::kUInt16, {6}},
      {"n.u32", at::kUInt32, {2, 3}},
      {"o.u64", at::kUInt64, {3}},
      {"p.f8_e4m3fnuz", at::kFloat8_e4m3fnuz, {4}},
      {"q.f8_e5m2fnuz", at::kFloat8_e5m2fnuz, {4}},
      {"r.c64", at::kComplexFloat, {2}},
      {"s.scalar", at::kFloat, {}},
      {"t.empty", at::kHalf, {0, 4}}};
  Named out;
  for (size_t k = 0; k < cases.size(); ++k) {
    const auto& [name, dtype, shape] = cases[k];
    out.emplace_back(name, pattern_tensor(static_cast<int>(k), dtype, shape));
  }
  return out;
}

// NUMPY_SET: the names of torch_set() whose dtype numpy has, with their original pattern index.
const std::vector<std::string> kNumpyNames = {"a.f64",  "b.f32", "c.f16", "g.i64",
                                              "h.i32",  "i.i16", "j.i8",  "k.u8",
                                              "l.bool", "m.u16", "n.u32", "o.u64"};

}  // namespace

TEST_CASE("Python safetensors reads our files identically and writes the same bytes",
          "[io][safetensors][reference]") {
  const std::string dir = qat::test::temp_dir();
  const Named tensors = torch_set();
  io::save_safetensors(dir + "/ours.safetensors", tensors);
  CHECK(qat::test::run_python("safetensors_io_ref.py",
                              {"check", dir + "/ours.safetensors", "torch"}) == 0);

  io::save_safetensors(dir + "/meta.safetensors", tensors, {{"source", "qat"}, {"note", "x=1"}});
  CHECK(qat::test::run_python("safetensors_io_ref.py",
                              {"check", dir + "/meta.safetensors", "meta"}) == 0);

  const std::string sharded = dir + "/sharded";
  const auto files = io::save_safetensors_sharded(sharded, tensors, 100);
  const size_t n = files.size() - 1;
  REQUIRE(n > 1);
  CHECK(qat::test::run_python("safetensors_io_ref.py",
                              {"check_sharded", sharded, std::to_string(n)}) == 0);
}

TEST_CASE("we read files written by Python safetensors (torch and numpy) bit for bit",
          "[io][safetensors][reference]") {
  const std::string dir = qat::test::temp_dir();
  REQUIRE(qat::test::run_python("safetensors_io_ref.py", {"write", dir}) == 0);
  const Named tensors = torch_set();

  const io::SafetensorsFile t = io::SafetensorsFile::open(dir + "/torch.safetensors");
  CHECK(t.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
  REQUIRE(t.names().size() == tensors.size());
  for (const auto& [name, want] : tensors) {
    CAPTURE(name);
    CHECK(same_bytes(t.tensor(name), want));
  }

  const io::SafetensorsFile np = io::SafetensorsFile::open(dir + "/numpy.safetensors");
  CHECK(np.metadata() == std::map<std::string, std::string>{{"source", "numpy"}});
  REQUIRE(np.names().size() == kNumpyNames.size());
  for (size_t k = 0; k < kNumpyNames.size(); ++k) {
    const std::string& name = kNumpyNames[k];
    CAPTURE(name);
    // numpy's set re-indexes the pattern from 0 (its own enumerate order).
    const at::Tensor& base = std::find_if(tensors.begin(), tensors.end(), [&](const auto& p) {
                               return p.first == name;
                             })->second;
    const at::Tensor want =
        pattern_tensor(static_cast<int>(k), base.scalar_type(), base.sizes().vec());
    CHECK(same_bytes(np.tensor(name), want));
  }
}
