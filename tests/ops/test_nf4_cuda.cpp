// NF4 CUDA kernels against the CPU reference: packed codes, absmax, double-quant pieces and
// dequantized values bit for bit. Skips itself (with a warning) on machines without a GPU.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "ops/nf4.h"
#include "tests/support/helpers.h"

TEST_CASE("NF4 CUDA quantize and dequantize match the CPU reference bit for bit", "[nf4][cuda]") {
  if (!qat::test::cuda_available()) {
    WARN("no CUDA device: skipped");
    return;
  }
  const auto dtype = GENERATE(at::kFloat, at::kBFloat16, at::kHalf);
  const std::vector<std::vector<int64_t>> shapes{{64, 128}, {7, 33}, {64 * 300 + 17}, {3, 5, 41}};
  for (const int64_t bs : {32, 64, 128, 256, 4096}) {
    for (const auto& shape : shapes) {
      for (uint64_t seed = 0; seed < 2; ++seed) {
        CAPTURE(dtype, bs, shape, seed);
        at::Tensor x =
            (seed == 1 ? qat::test::adversarial(shape, seed) : qat::test::randn(shape, seed));
        x.view({-1}).slice(0, 0, 64).zero_();
        x = x.to(dtype);
        const auto qc = qat::ops::nf4_quantize(x, bs);
        const auto qg = qat::ops::nf4_quantize(x.cuda(), bs);
        REQUIRE(at::equal(qc.codes, qg.codes.cpu()));
        REQUIRE(qat::test::bit_equal(qc.absmax, qg.absmax.cpu()));
        const auto dc = qat::ops::nf4_double_quantize(qc.absmax);
        const auto dg = qat::ops::nf4_double_quantize(qg.absmax);
        REQUIRE(at::equal(dc.codes, dg.codes.cpu()));
        REQUIRE(qat::test::bit_equal(dc.nested_absmax, dg.nested_absmax.cpu()));
        REQUIRE(qat::test::bit_equal(dc.offset, dg.offset.cpu()));
        const at::Tensor ac = qat::ops::nf4_double_dequantize(dc);
        const at::Tensor ag = qat::ops::nf4_double_dequantize(dg);
        REQUIRE(qat::test::bit_equal(ac, ag.cpu()));
        REQUIRE(qat::test::bit_equal(
            qat::ops::nf4_dequantize(qc.codes, ac, x.sizes(), bs, dtype),
            qat::ops::nf4_dequantize(qg.codes, ag, x.sizes(), bs, dtype).cpu()));
      }
    }
  }
}
