// NF4 and the dynamic 8-bit map without Python: the pinned map, the all-zero block rule, ties,
// packing, and the errors bad inputs give. Agreement with bitsandbytes itself is
// tests/qat/nf4/test_nf4_bnb.cpp.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <tuple>
#include <vector>

#include "ops/nf4.h"
#include "ops/nf4_math.h"
#include "ops/quant_math.h"
#include "tests/support/helpers.h"

namespace {

// From the source tree (QAT_SOURCE_DIR), not __FILE__: ccache may compile with relative paths.
const std::filesystem::path kFixture =
    std::filesystem::path(QAT_SOURCE_DIR) / "tests" / "fixtures" / "bnb_dynamic_map_signed.txt";

}  // namespace

TEST_CASE("The dynamic map in code equals the pinned bitsandbytes fixture bit for bit", "[nf4]") {
  std::ifstream in(kFixture);
  REQUIRE(in.good());
  const at::Tensor map = qat::ops::dynamic_map_signed();
  std::string line;
  int rows = 0;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    int index = -1;
    std::string hex;
    ls >> index >> hex;
    CAPTURE(line);
    REQUIRE(index == rows);
    const auto bits = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
    REQUIRE(qat::ops::math::float_bits(map[index].item<float>()) == bits);
    ++rows;
  }
  REQUIRE(rows == 256);
}

TEST_CASE("NF4 gives an all-zero block code 7 and +0.0 as bitsandbytes on the CPU", "[nf4]") {
  at::Tensor x = qat::test::randn({64 * 3 + 5}, 1);
  x.slice(0, 64, 128).zero_();  // a full zero block
  x.slice(0, 192).zero_();      // a partial zero block
  const auto q = qat::ops::nf4_quantize(x, 64);
  const at::Tensor bytes = q.codes.view({-1});
  for (int64_t j = 32; j < 64; ++j) REQUIRE(bytes[j].item<uint8_t>() == 0x77);
  REQUIRE(bytes[96].item<uint8_t>() == 0x77);
  REQUIRE(bytes[97].item<uint8_t>() == 0x77);
  REQUIRE(bytes[98].item<uint8_t>() == 0x77);    // the padding nibble is code 7 too
  REQUIRE(q.absmax[1].item<float>() == 0.0f);    // a full block stores 0
  REQUIRE(q.absmax[3].item<float>() == 1e-38f);  // the partial block stores max(0, 1e-38)
  const at::Tensor y = qat::ops::nf4_dequantize(q.codes, q.absmax, x.sizes(), 64, at::kFloat);
  for (int64_t i = 64; i < 128; ++i) REQUIRE(qat::ops::math::float_bits(y[i].item<float>()) == 0u);
}

TEST_CASE("NF4 codes count the thresholds strictly below y so ties take the lower code", "[nf4]") {
  // The block's absmax is 1, so y == x exactly; every threshold gives its lower code. The
  // thresholds are bitsandbytes' float32 midpoints (bits from torch: (v[k] + v[k+1]) / 2).
  const std::vector<uint32_t> bits{0xbf591cd8u, 0xbd3a7871u, 0x3d22faffu, 0x3f006d04u, 0x3f5c89dau};
  const std::vector<int> lower{0, 6, 7, 12, 14};
  std::vector<float> thresholds;
  for (const uint32_t b : bits) thresholds.push_back(qat::ops::math::bits_float(b));
  at::Tensor x = at::zeros({64});
  x[0] = 1.0f;
  for (size_t k = 0; k < thresholds.size(); ++k) x[static_cast<int64_t>(2 * k + 2)] = thresholds[k];
  const at::Tensor bytes = qat::ops::nf4_quantize(x, 64).codes.view({-1});
  REQUIRE(bytes[0].item<uint8_t>() >> 4 == 15);
  for (size_t k = 0; k < thresholds.size(); ++k) {
    CAPTURE(k);
    REQUIRE(bytes[static_cast<int64_t>(k + 1)].item<uint8_t>() >> 4 == lower[k]);
    // one ulp above the threshold takes the upper code
    REQUIRE(qat::ops::nf4_math::nf4_code_cpu(std::nextafter(thresholds[k], 2.0f)) == lower[k] + 1);
  }
}

TEST_CASE("NF4 dequantize is table times absmax in float32 then one rounding", "[nf4]") {
  const at::Tensor x = qat::test::randn({9, 70}, 3);
  const auto q = qat::ops::nf4_quantize(x, 128);
  const at::Tensor y32 = qat::ops::nf4_dequantize(q.codes, q.absmax, x.sizes(), 128, at::kFloat);
  REQUIRE(qat::test::bit_equal(
      qat::ops::nf4_dequantize(q.codes, q.absmax, x.sizes(), 128, at::kBFloat16),
      y32.to(at::kBFloat16)));
  REQUIRE(qat::test::bit_equal(
      qat::ops::nf4_dequantize(q.codes, q.absmax, x.sizes(), 128, at::kHalf), y32.to(at::kHalf)));
  // Every value is one of the 16 levels times its block's absmax.
  const at::Tensor flat = y32.view({-1});
  for (int64_t i = 0; i < flat.numel(); i += 37) {
    const float a = q.absmax[i / 128].item<float>();
    const uint8_t byte = q.codes.view({-1})[i / 2].item<uint8_t>();
    const int c = i % 2 == 0 ? byte >> 4 : byte & 0x0f;
    REQUIRE(flat[i].item<float>() == qat::ops::math::nf4_value(c) * a);
  }
}

TEST_CASE("NF4 dequantize to float32 is the level times its block's absmax for every element",
          "[nf4]") {
  // Sizes whose blocks end mid-vector and an odd total: the vector path (16 values a step, on
  // CPUs with AVX2) and the scalar tail must agree with plain libtorch indexing everywhere.
  for (const auto& [rows, cols, blocksize] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {9, 70, 128}, {3, 33, 32}, {64, 96, 64}, {1, 4097, 4096}}) {
    CAPTURE(rows, cols, blocksize);
    const at::Tensor x = qat::test::randn({rows, cols}, 5);
    const auto q = qat::ops::nf4_quantize(x, blocksize);
    const at::Tensor y =
        qat::ops::nf4_dequantize(q.codes, q.absmax, x.sizes(), blocksize, at::kFloat);
    const int64_t n = x.numel();
    const at::Tensor bytes = q.codes.view({-1}).to(at::kLong);
    const at::Tensor codes =
        at::stack({bytes.div(16, "floor"), bytes.remainder(16)}, 1).view({-1}).slice(0, 0, n);
    std::vector<float> levels;
    for (int c = 0; c < 16; ++c) levels.push_back(qat::ops::math::nf4_value(c));
    const at::Tensor table = at::tensor(levels);
    const at::Tensor scale = q.absmax.repeat_interleave(blocksize).slice(0, 0, n);
    REQUIRE(qat::test::bit_equal(y.view({-1}), table.index_select(0, codes) * scale));
  }
}

TEST_CASE("NF4 rejects bad blocksizes, empty tensors and non-float inputs with what to fix",
          "[nf4]") {
  const at::Tensor x = qat::test::randn({128}, 0);
  REQUIRE_THROWS_WITH(qat::ops::nf4_quantize(x, 48), Catch::Contains("power of two in [32, 4096]"));
  REQUIRE_THROWS_WITH(qat::ops::nf4_quantize(x, 16), Catch::Contains("got 16"));
  REQUIRE_THROWS_WITH(qat::ops::nf4_quantize(x, 8192), Catch::Contains("got 8192"));
  REQUIRE_THROWS_WITH(qat::ops::nf4_quantize(at::empty({0, 4}), 64), Catch::Contains("is empty"));
  REQUIRE_THROWS_WITH(qat::ops::nf4_quantize(at::ones({64}, at::kInt), 64),
                      Catch::Contains("expected a float32, float16 or bfloat16 tensor"));
  at::Tensor bad = x.clone();
  bad[3] = std::numeric_limits<float>::infinity();
  REQUIRE_THROWS_WITH(qat::ops::nf4_quantize(bad, 64), Catch::Contains("NaN or Inf"));
  const auto q = qat::ops::nf4_quantize(x, 64);
  REQUIRE_THROWS_WITH(qat::ops::nf4_dequantize(q.codes, q.absmax, {130}, 64, at::kFloat),
                      Catch::Contains("needs 65 packed bytes"));
  REQUIRE_THROWS_WITH(qat::ops::nf4_dequantize(q.codes, q.absmax, {128}, 64, at::kInt),
                      Catch::Contains("output dtype must be float32"));
}
