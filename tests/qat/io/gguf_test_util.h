// GGUF test helpers: a sample file with every KV type and every writable tensor kind, and the
// comparison of a GgufFile with what GGUFReader saw (tests/ref/gguf_io_ref.py dump).
#pragma once

#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "ops/pack.h"
#include "ops/quantize.h"
#include "qat/io/gguf_file.h"
#include "qat/io/gguf_writer.h"
#include "tests/qat/io/io_test_util.h"

namespace qat::test::io {

inline std::string to_hex(const std::string& s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// Block bytes of x [rows, K] in a GGUF block format, through the project's own quantizer.
inline at::Tensor gguf_blocks(const at::Tensor& x, const std::string& format) {
  const auto spec = qat::scheme::QuantSpec::from_name(format);
  const auto qp = qat::ops::choose_qparams(x, spec);
  return qat::ops::pack_gguf_blocks(qat::ops::quantize(x, spec, qp), spec, qp);
}

// Every KV type (scalars and arrays, empty arrays when `with_empty_arrays`) and tensors F32,
// F16, BF16, Q8_0, Q4_0, Q4_1 (+ a 1-D norm).
inline qat::io::GgufWriter sample_writer(bool with_empty_arrays) {
  using qat::io::GgufValue;
  qat::io::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_scalar<uint8_t>("t.u8", 200).set_scalar<int8_t>("t.i8", -100);
  w.set_scalar<uint16_t>("t.u16", 60000).set_scalar<int16_t>("t.i16", -30000);
  w.set_u32("t.u32", 4000000000u).set_i32("t.i32", -2000000000);
  w.set_f32("t.f32", 0.1f)
      .set_bool("t.bool", true)
      .set_string("t.str", "h\xc3\xa9llo \xe2\x9c\x93");
  w.set_u64("t.u64", (uint64_t{1} << 63) + 5).set_scalar<int64_t>("t.i64", -(int64_t{1} << 62));
  w.set_scalar<double>("t.f64", 1.0 / 3.0);
  w.set_array<uint8_t>("t.arr.u8", {1, 2, 255});
  w.set_array<int8_t>("t.arr.i8", {-1, 2});
  w.set_array<uint16_t>("t.arr.u16", {7, 65535});
  w.set_array<int16_t>("t.arr.i16", {-1, 2, -3});
  w.set_array<uint32_t>("t.arr.u32", {1, 4000000000u});
  w.set_array<int32_t>("t.arr.i32", {-7, 0, 7});
  w.set_array<float>("t.arr.f32", {0.5f, -1.25f, 3e-8f, -0.0f});
  w.set_array<bool>("t.arr.bool", {true, false, true});
  w.set_array<uint64_t>("t.arr.u64", {1, ~uint64_t{0}});
  w.set_array<int64_t>("t.arr.i64", {-1, INT64_MIN});
  w.set_array<double>("t.arr.f64", {1e300, -2.5});
  w.set_string_array("t.arr.str", {"a", "", "\xc3\x9f\xc3\xa7", "<|im_end|>"});
  if (with_empty_arrays) {
    w.set_array<int32_t>("t.arr.empty_i32", {});
    w.set_string_array("t.arr.empty_str", {});
  }
  const at::Tensor x = qat::test::randn({6, 64}, 3);
  w.add_tensor("dense.f32", x);
  w.add_tensor("dense.f16", x, qat::io::GgmlType::kF16);
  w.add_tensor("dense.bf16", x, qat::io::GgmlType::kBF16);
  w.add_tensor("norm.f32", qat::test::randn({64}, 4));
  w.add_raw_tensor("blk.q8_0", qat::io::GgmlType::kQ8_0, {6, 64}, gguf_blocks(x, "gguf_q8_0"));
  w.add_raw_tensor("blk.q4_0", qat::io::GgmlType::kQ4_0, {6, 64}, gguf_blocks(x, "gguf_q4_0"));
  w.add_raw_tensor("blk.q4_1", qat::io::GgmlType::kQ4_1, {6, 64}, gguf_blocks(x, "gguf_q4_1"));
  return w;
}

// Checks `f` against a dump of the same file by GGUFReader: alignment, data offset, every KV
// (order, types, value bytes), every tensor info, and for dumped tensors their bytes and the
// bit pattern of gguf.quants.dequantize vs our dequantize.
inline void compare_with_dump(const qat::io::GgufFile& f, const std::string& dir) {
  const nlohmann::json meta = read_json(dir + "/meta.json");
  CHECK(meta["alignment"].get<uint64_t>() == f.alignment());
  CHECK(meta["data_offset"].get<uint64_t>() == f.data_offset());
  const auto& entries = f.metadata().entries();
  REQUIRE(meta["kv"].size() == entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& kv = meta["kv"][i];
    const auto& [key, value] = entries[i];
    CAPTURE(i, key);
    CHECK(kv["key"].get<std::string>() == key);
    CHECK(kv["type"].get<uint32_t>() == static_cast<uint32_t>(value.type()));
    CHECK(kv["elem_type"].get<uint32_t>() == static_cast<uint32_t>(value.element_type()));
    CHECK(kv["count"].get<uint64_t>() == value.count());
    if (kv.contains("strings")) {
      REQUIRE(kv["strings"].size() == value.strings().size());
      for (size_t s = 0; s < value.strings().size(); ++s) {
        CHECK(kv["strings"][s].get<std::string>() == to_hex(value.strings()[s]));
      }
    } else {
      CHECK(kv["hex"].get<std::string>() == to_hex(value.raw()));
    }
  }
  REQUIRE(meta["tensors"].size() == f.tensors().size());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& t = f.tensors()[i];
    const auto& jt = meta["tensors"][i];
    CAPTURE(i, t.name);
    CHECK(jt["name"].get<std::string>() == t.name);
    CHECK(jt["type"].get<uint32_t>() == static_cast<uint32_t>(t.type));
    CHECK(jt["ne"].get<std::vector<int64_t>>() == t.ne);
    CHECK(jt["offset"].get<uint64_t>() == t.offset);
    CHECK(jt["nbytes"].get<uint64_t>() == t.nbytes);
    const std::string raw = dir + "/" + std::to_string(i) + ".raw";
    if (!std::filesystem::exists(raw)) continue;
    const std::string bytes = read_file(raw);
    REQUIRE(bytes.size() == t.nbytes);
    CHECK(std::memcmp(bytes.data(), f.tensor_data(t.name), t.nbytes) == 0);
    const at::Tensor want = read_f32(dir + "/" + std::to_string(i) + ".f32", t.torch_shape());
    REQUIRE(want.defined());
    CHECK(qat::test::bit_equal(f.dequantize(t.name), want));
  }
}

// Runs the dump of `gguf` into a fresh directory; `names` as gguf_io_ref.py takes them.
inline std::string dump_with_python(const std::string& gguf, std::vector<std::string> names) {
  const std::string dir = qat::test::temp_dir();
  std::vector<std::string> args{"dump", gguf, dir};
  args.insert(args.end(), names.begin(), names.end());
  REQUIRE(qat::test::run_python("gguf_io_ref.py", args) == 0);
  return dir;
}

}  // namespace qat::test::io
