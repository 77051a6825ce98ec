// GGUF block formats against ggml's reference quantizers as ported to the `gguf` Python package
// (bit-exact with ggml-quants.c quantize_row_*_ref). Requires the venv of scripts/bootstrap.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "ops/pack.h"
#include "ops/quantize.h"
#include "tests/support/helpers.h"

using qat::scheme::QuantSpec;

namespace {

// Inputs that stress ggml's rules: exact ties after scaling (x*id + 8.5 landing on integers),
// signed maxima of both signs, repeated extremes, all-zero and constant blocks, tiny and huge
// magnitudes.
at::Tensor adversarial_blocks(uint64_t seed) {
  at::Tensor x = qat::test::adversarial({16, 256}, seed);
  x[0].zero_();                                         // all-zero blocks
  x[1].fill_(0.75f);                                    // constant blocks (d = 0 for q4_1)
  x[2] = at::arange(256, at::kFloat).sub(128).div(16);  // a grid: many exact ties
  x[3] = x[3] * 1e-6;                                   // tiny
  x[4] = x[4] * 3e4;                                    // near fp16's range for d
  x[5].slice(0, 0, 32).fill_(-2.0f);  // the signed max repeated (q4_0 picks the first)
  x[5][7] = 2.0f;
  x[6].slice(0, 0, 32) = at::tensor({-8.0f, 8.0f}).repeat({16});  // ties between +max and -max
  return x;
}

}  // namespace

TEST_CASE("GGUF q8_0/q4_0/q4_1/q5_0/q5_1 blocks equal ggml's reference quantizer byte for byte",
          "[gguf][reference]") {
  for (const std::string fmt : {"gguf_q8_0", "gguf_q4_0", "gguf_q4_1", "gguf_q5_0", "gguf_q5_1"}) {
    const QuantSpec spec = QuantSpec::from_name(fmt);
    for (uint64_t seed = 0; seed < 4; ++seed) {
      CAPTURE(fmt, seed);
      const at::Tensor x = seed < 2 ? qat::test::randn({16, 256}, seed) : adversarial_blocks(seed);
      const auto ref = qat::test::run_block_reference("gguf_quant_ref.py", fmt, x);

      const qat::ops::QParams qp = qat::ops::choose_qparams(x, spec);
      const at::Tensor blocks =
          qat::ops::pack_gguf_blocks(qat::ops::quantize(x, spec, qp), spec, qp);
      REQUIRE(static_cast<size_t>(blocks.numel()) == ref.blocks.size());
      const uint8_t* ours = blocks.data_ptr<uint8_t>();
      for (size_t i = 0; i < ref.blocks.size(); ++i) {
        CAPTURE(i, i / spec.traits().block_bytes);
        REQUIRE(static_cast<int>(ours[i]) == static_cast<int>(ref.blocks[i]));
      }
      // Fake quant equals the reference's own dequantization bit for bit.
      const at::Tensor fq = qat::ops::fake_quantize(x, spec, qp, false).y;
      REQUIRE(qat::test::bit_equal(fq, ref.dequant));
      // And our block reader gives the same values back.
      const auto un = qat::ops::unpack_gguf_blocks(blocks, spec);
      REQUIRE(qat::test::bit_equal(qat::ops::dequantize(un.codes, spec, un.qparams, at::kFloat),
                                   ref.dequant));
    }
  }
}
