// CUDA kernels against the CPU reference: codes, masks and values bit for bit. Skips itself
// (with a warning) on machines without a GPU.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "ops/quantize.h"
#include "tests/support/helpers.h"

using qat::scheme::Granularity;
using qat::scheme::QuantSpec;

TEST_CASE("CUDA quantize, dequantize and fake quant match the CPU reference bit for bit",
          "[cuda]") {
  if (!qat::test::cuda_available()) {
    WARN("no CUDA device: skipped");
    return;
  }
  const std::vector<std::pair<std::string, Granularity>> cases{
      {"int4", Granularity::per_group(32)},      {"int4", Granularity::per_group(128)},
      {"int8", Granularity::per_axis(0)},        {"uint4", Granularity::per_group(64)},
      {"int8", Granularity::per_token()},        {"fp8_e4m3", Granularity::per_tensor()},
      {"fp8_e5m2", Granularity::per_group(32)},  {"nf4", Granularity::per_group(64)},
      {"gguf_q8_0", Granularity::per_group(32)}, {"gguf_q4_0", Granularity::per_group(32)},
      {"gguf_q4_1", Granularity::per_group(32)}, {"int3", Granularity::per_axis(1)}};
  const auto dtype = GENERATE(at::kFloat, at::kBFloat16, at::kHalf);
  for (const auto& [name, gran] : cases) {
    const QuantSpec spec = QuantSpec::from_name(name).with(gran);
    for (uint64_t seed = 0; seed < 3; ++seed) {
      CAPTURE(name, gran.to_string(), dtype, seed);
      const at::Tensor x =
          (seed == 2 ? qat::test::adversarial({64, 512}, seed) : qat::test::randn({64, 512}, seed))
              .to(dtype);
      const at::Tensor xc = x.cuda();
      const auto qc = qat::ops::choose_qparams(x, spec);
      const auto qg = qat::ops::choose_qparams(xc, spec);
      REQUIRE(qat::test::bit_equal(qc.scale, qg.scale.cpu()));
      REQUIRE(qat::test::bit_equal(qc.zero, qg.zero.cpu()));
      const auto fc = qat::ops::fake_quantize(x, spec, qc, true);
      const auto fg = qat::ops::fake_quantize(xc, spec, qg, true);
      REQUIRE(qat::test::bit_equal(fc.y, fg.y.cpu()));
      REQUIRE(at::equal(fc.mask, fg.mask.cpu()));
      const auto dg =
          qat::ops::fake_quantize_dynamic(xc, spec, true);  // fused path where it applies
      REQUIRE(qat::test::bit_equal(fc.y, dg.y.cpu()));
      REQUIRE(at::equal(fc.mask, dg.mask.cpu()));
      REQUIRE(qat::test::bit_equal(qc.scale, dg.qparams.scale.cpu()));
      const at::Tensor cc = qat::ops::quantize(x, spec, qc);
      const at::Tensor cg = qat::ops::quantize(xc, spec, qg);
      REQUIRE(at::equal(cc, cg.cpu()));
      REQUIRE(qat::test::bit_equal(qat::ops::dequantize(cc, spec, qc, dtype),
                                   qat::ops::dequantize(cg, spec, qg, dtype).cpu()));
    }
  }
}
