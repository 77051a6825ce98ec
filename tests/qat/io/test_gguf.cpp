// GGUF writer -> reader round trips: metadata of every type, tensor infos, alignment, data, and
// dequantization; plus the typed getters' errors.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "qat/io/gguf_blocks.h"
#include "qat/io/gguf_file.h"
#include "qat/io/gguf_writer.h"
#include "tests/qat/io/gguf_test_util.h"

namespace io = qat::io;
using Catch::Contains;

TEST_CASE("GGUF round trip keeps metadata of every type and tensors losslessly", "[io][gguf]") {
  const std::string path = qat::test::temp_dir() + "/sample.gguf";
  const io::GgufWriter w = qat::test::io::sample_writer(/*with_empty_arrays=*/true);
  w.write(path);
  const io::GgufFile f = io::GgufFile::open(path);

  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.data_offset() % 32 == 0);
  // Every KV comes back equal, in order (type, element type, count, bytes, strings).
  REQUIRE(f.metadata().size() == w.metadata().size());
  for (size_t i = 0; i < w.metadata().size(); ++i) {
    CAPTURE(w.metadata().entries()[i].first);
    CHECK(f.metadata().entries()[i].first == w.metadata().entries()[i].first);
    CHECK(f.metadata().entries()[i].second == w.metadata().entries()[i].second);
  }
  const auto& m = f.metadata();
  CHECK(m.get_u8("t.u8") == 200);
  CHECK(m.get_i8("t.i8") == -100);
  CHECK(m.get_u16("t.u16") == 60000);
  CHECK(m.get_i16("t.i16") == -30000);
  CHECK(m.get_u32("t.u32") == 4000000000u);
  CHECK(m.get_i32("t.i32") == -2000000000);
  CHECK(m.get_f32("t.f32") == 0.1f);
  CHECK(m.get_bool("t.bool"));
  CHECK(m.get_string("t.str") == "h\xc3\xa9llo \xe2\x9c\x93");
  CHECK(m.get_u64("t.u64") == (uint64_t{1} << 63) + 5);
  CHECK(m.get_i64("t.i64") == -(int64_t{1} << 62));
  CHECK(m.get_f64("t.f64") == 1.0 / 3.0);
  CHECK(m.get_array<uint8_t>("t.arr.u8") == std::vector<uint8_t>{1, 2, 255});
  CHECK(m.get_i32_array("t.arr.i32") == std::vector<int32_t>{-7, 0, 7});
  CHECK(m.get_u32_array("t.arr.u32") == std::vector<uint32_t>{1, 4000000000u});
  CHECK(m.get_f32_array("t.arr.f32") == std::vector<float>{0.5f, -1.25f, 3e-8f, -0.0f});
  CHECK(m.get_array<bool>("t.arr.bool") == std::vector<bool>{true, false, true});
  CHECK(m.get_array<int64_t>("t.arr.i64") == std::vector<int64_t>{-1, INT64_MIN});
  CHECK(m.get_array<double>("t.arr.f64") == std::vector<double>{1e300, -2.5});
  CHECK(m.get_string_array("t.arr.str") ==
        std::vector<std::string>{"a", "", "\xc3\x9f\xc3\xa7", "<|im_end|>"});
  CHECK(m.get_i32_array("t.arr.empty_i32").empty());
  CHECK(m.get_string_array("t.arr.empty_str").empty());

  // Tensor infos: torch [out, in] is written as ne [in, out]; offsets sequential and aligned.
  REQUIRE(f.tensors().size() == 7);
  uint64_t expected = 0;
  for (const auto& t : f.tensors()) {
    CAPTURE(t.name);
    CHECK(t.offset == expected);
    expected += (t.nbytes + 31) / 32 * 32;
  }
  CHECK(f.tensor_info("dense.f32").ne == std::vector<int64_t>{64, 6});
  CHECK(f.tensor_info("norm.f32").ne == std::vector<int64_t>{64});
  CHECK(f.tensor_info("blk.q4_1").type == io::GgmlType::kQ4_1);
  CHECK(f.tensor_info("blk.q4_1").nbytes == 6 * 2 * 20);

  const at::Tensor x = qat::test::randn({6, 64}, 3);
  CHECK(qat::test::bit_equal(f.dequantize("dense.f32"), x));
  CHECK(qat::test::bit_equal(f.dequantize("dense.f16"), x.to(at::kHalf).to(at::kFloat)));
  CHECK(qat::test::bit_equal(f.dequantize("dense.bf16"), x.to(at::kBFloat16).to(at::kFloat)));
  CHECK(qat::test::bit_equal(f.dequantize("norm.f32"), qat::test::randn({64}, 4)));
  for (const std::string fmt : {"q8_0", "q4_0", "q4_1"}) {
    CAPTURE(fmt);
    // Raw blocks come back byte for byte, and their dequantization is our fake quant exactly.
    const at::Tensor blocks = qat::test::io::gguf_blocks(x, "gguf_" + fmt);
    CHECK(qat::test::bit_equal(f.raw("blk." + fmt), blocks));
    const auto spec = qat::scheme::QuantSpec::from_name("gguf_" + fmt);
    const at::Tensor fq =
        qat::ops::fake_quantize(x, spec, qat::ops::choose_qparams(x, spec), false).y;
    CHECK(qat::test::bit_equal(f.dequantize("blk." + fmt), fq));
  }
}

TEST_CASE("GGUF writer honours general.alignment", "[io][gguf]") {
  const std::string path = qat::test::temp_dir() + "/aligned.gguf";
  io::GgufWriter w;
  w.set_u32("general.alignment", 256);
  w.add_tensor("a", at::ones({3}));
  w.add_tensor("b", at::ones({5}));
  w.write(path);
  const io::GgufFile f = io::GgufFile::open(path);
  CHECK(f.alignment() == 256);
  CHECK(f.data_offset() % 256 == 0);
  CHECK(f.tensor_info("b").offset == 256);
  CHECK(f.dequantize("b").equal(at::ones({5})));
  CHECK(qat::test::io::read_file(path).size() == f.data_offset() + 512);
  REQUIRE_THROWS_WITH(w.set_u32("general.alignment", 48), Contains("power of two"));
  REQUIRE_THROWS_WITH(w.set_u64("general.alignment", 64),
                      Contains("expected UINT32, found UINT64"));
}

TEST_CASE("GGUF typed getters name the key and the expected vs found type", "[io][gguf]") {
  const std::string path = qat::test::temp_dir() + "/typed.gguf";
  io::GgufWriter w;
  w.set_u64("llama.context_length", 8192).set_string_array("toks", {"a"});
  w.write(path);
  const io::GgufFile f = io::GgufFile::open(path);
  REQUIRE_THROWS_WITH(f.metadata().get_u32("llama.context_length"),
                      Contains("GGUF key 'llama.context_length': expected UINT32, found UINT64"));
  REQUIRE_THROWS_WITH(f.metadata().get_i32_array("toks"),
                      Contains("expected ARRAY[INT32], found ARRAY[STRING]"));
  REQUIRE_THROWS_WITH(f.metadata().get_string("toks"),
                      Contains("expected STRING, found ARRAY[STRING]"));
  REQUIRE_THROWS_WITH(f.metadata().get_f32("missing"), Contains("GGUF key 'missing' not found"));
  CHECK(f.metadata().get_optional<uint64_t>("llama.context_length") == 8192u);
  CHECK(!f.metadata().get_optional<uint32_t>("missing").has_value());
  REQUIRE_THROWS_WITH(f.dequantize("nope"), Contains("no tensor named 'nope'"));
}

TEST_CASE("GGUF writer rejects tensors it cannot describe", "[io][gguf]") {
  io::GgufWriter w;
  w.add_tensor("x", at::ones({2, 32}));
  REQUIRE_THROWS_WITH(w.add_tensor("x", at::ones({2})), Contains("duplicate tensor name 'x'"));
  REQUIRE_THROWS_WITH(w.add_tensor(std::string(64, 'n'), at::ones({2})), Contains("1..63 bytes"));
  REQUIRE_THROWS_WITH(w.add_tensor("q", at::ones({2, 32}), io::GgmlType::kQ8_0),
                      Contains("add_raw_tensor"));
  REQUIRE_THROWS_WITH(
      w.add_raw_tensor("r", io::GgmlType::kQ8_0, {2, 40}, at::zeros({100}, at::kByte)),
      Contains("not a multiple of the Q8_0 block size 32"));
  REQUIRE_THROWS_WITH(
      w.add_raw_tensor("s", io::GgmlType::kQ8_0, {2, 32}, at::zeros({60}, at::kByte)),
      Contains("takes 68 bytes, got 60"));
}

TEST_CASE("fp16 bits convert to float exactly, subnormals and specials included", "[io][gguf]") {
  // Every one of the 65536 half bit patterns: numbers against libtorch's conversion; NaNs keep
  // their payload as numpy (the gguf package's dequantize) and ggml do, where libtorch
  // canonicalises them.
  const at::Tensor bits = at::arange(65536, at::kInt).to(at::kShort);
  const at::Tensor want = bits.view(at::kHalf).to(at::kFloat);
  const auto* b = bits.data_ptr<int16_t>();
  const auto* w = want.data_ptr<float>();
  int mismatches = 0, nans = 0;
  for (int i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(b[i]);
    const float got = io::fp16_to_fp32(h);
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) {
      ++nans;
      uint32_t g;
      std::memcpy(&g, &got, 4);
      mismatches += g != ((static_cast<uint32_t>(h & 0x8000) << 16) | 0x7f800000u |
                          (uint32_t{h & 0x3ffu} << 13));
    } else {
      mismatches += std::memcmp(&got, &w[i], 4) != 0;
    }
  }
  CHECK(nans == 2046);
  CHECK(mismatches == 0);
}
