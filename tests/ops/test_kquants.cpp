// ggml's k-quants (Q4_K, Q6_K) against ggml itself: libggml-base from llama.cpp's sources, built
// by scripts/bootstrap, via tests/ref/ggml_kquant_ref.py. Blocks must match byte for byte, and
// fake quant must equal the blocks' dequantization (by the `gguf` package) bit for bit.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <limits>

#include "ops/kquant.h"
#include "ops/kquant_math.h"
#include "ops/quantize.h"
#include "tests/support/helpers.h"

using qat::scheme::QuantSpec;

namespace {

// Rows (of 2 super-blocks each) that walk the quantizers' special cases.
at::Tensor special_rows(uint64_t seed) {
  at::Tensor x = qat::test::randn({16, 512}, seed);
  x[0].zero_();             // all zero: Q6_K writes a zero block, Q4_K d = dmin = 0
  x[1].fill_(0.75f);        // constant positive (min clamps to 0)
  x[2].fill_(-1.25f);       // constant negative (max == min in the fit)
  x[3] = x[3] * 1e-6;       // tiny: fp16 d and dmin become subnormal
  x[4] = x[4] * 3e3;        // large
  x[5] = x[5].abs().neg();  // all negative
  x[6] = at::arange(512, at::kFloat).sub(256).div(16);  // a grid: exact ties everywhere
  x[7].slice(0, 0, 32).mul_(1e-4);     // one sub-block far smaller than the rest: its 6-bit
  x[7].slice(0, 256, 272).mul_(1e-4);  //   scale rounds to 0 and ggml keeps the fit's codes
  x[8] = x[8].abs();                   // all positive
  x[9].slice(0, 0, 256).zero_();       // zero super-block next to a normal one
  x[10] = x[10] * 0.02;                // the scale of real linear weights
  x[11][3] = 40.0f;                    // an outlier
  x[12] = qat::test::adversarial({512}, seed + 7);
  x[13] = x[13].sign() * x[13].abs().pow(3);  // heavy tails
  x[14].slice(0, 0, 16).fill_(2.0f);          // a Q6_K sub-block that is constant
  x[15] = x[15].round();                      // integers (ties after scaling)
  return x;
}

}  // namespace

TEST_CASE("k-quant blocks equal ggml's quantize_row_q4_K_ref / q5_K_ref / q6_K_ref byte for byte",
          "[gguf][kquant][reference]") {
  for (const std::string fmt : {"gguf_q4_k", "gguf_q5_k", "gguf_q6_k"}) {
    const QuantSpec spec = QuantSpec::from_name(fmt);
    for (uint64_t seed = 0; seed < 4; ++seed) {
      CAPTURE(fmt, seed);
      const at::Tensor x = seed == 0   ? qat::test::randn({32, 1024}, seed)
                           : seed == 1 ? qat::test::adversarial({32, 512}, seed)
                                       : special_rows(seed);
      const auto ref = qat::test::run_block_reference("ggml_kquant_ref.py", fmt, x);
      const at::Tensor blocks = qat::ops::quantize_kquant(x, spec);
      REQUIRE(static_cast<size_t>(blocks.numel()) == ref.blocks.size());
      const uint8_t* ours = blocks.data_ptr<uint8_t>();
      for (size_t i = 0; i < ref.blocks.size(); ++i) {
        CAPTURE(i, i / spec.traits().block_bytes, i % spec.traits().block_bytes);
        REQUIRE(static_cast<int>(ours[i]) == static_cast<int>(ref.blocks[i]));
      }
      // Values: our dequantization and fake quant equal the gguf package's dequantization.
      REQUIRE(
          qat::test::bit_equal(qat::ops::dequantize_kquant(blocks, spec, at::kFloat), ref.dequant));
      REQUIRE(qat::test::bit_equal(qat::ops::fake_quantize_kquant(x, spec), ref.dequant));
      const auto dyn = qat::ops::fake_quantize_dynamic(x, spec, /*want_mask=*/true);
      REQUIRE(qat::test::bit_equal(dyn.y, ref.dequant));
      REQUIRE(dyn.mask.all().item<bool>());
    }
  }
}

TEST_CASE("the host's lockstep fits of 8 sub-blocks equal the per-sub-block fits the GPU runs",
          "[gguf][kquant]") {
  // The CPU fits a super-block's sub-blocks 8 at a time in lockstep (vectorized over sub-blocks);
  // the CUDA kernel calls affine_fit_subblock / q6k_fit_subblock once per sub-block. Both must give
  // the same bits; the lockstep one is also checked against ggml above.
  namespace k = qat::ops::kquant;
  for (uint64_t seed = 0; seed < 3; ++seed) {
    const at::Tensor x = seed == 0 ? special_rows(seed) : qat::test::adversarial({16, 512}, seed);
    const at::Tensor w = x.abs().add(x.pow(2).mean().sqrt());  // positive weights, like ggml's
    const float* xs = x.data_ptr<float>();
    const float* ws = w.data_ptr<float>();
    for (int64_t b = 0; b < x.numel() / 256; ++b) {
      for (int nmax : {15, 31}) {
        const float rmin = nmax == 15 ? -1.0f : -0.5f;
        const int nstep = nmax == 15 ? 20 : 15;
        uint8_t l8[256], l1[256];
        float s8[8], m8[8];
        if (nmax == 15) {
          k::affine_fit_8_subblocks<15>(xs + 256 * b, ws + 256 * b, rmin, nstep, l8, s8, m8);
        } else {
          k::affine_fit_8_subblocks<31>(xs + 256 * b, ws + 256 * b, rmin, nstep, l8, s8, m8);
        }
        for (int j = 0; j < 8; ++j) {
          const float* xj = xs + 256 * b + 32 * j;
          const float* wj = ws + 256 * b + 32 * j;
          float m1 = 0.0f;
          const float s1 = nmax == 15
                               ? k::affine_fit_subblock<15>(xj, wj, rmin, nstep, l1 + 32 * j, &m1)
                               : k::affine_fit_subblock<31>(xj, wj, rmin, nstep, l1 + 32 * j, &m1);
          CAPTURE(seed, b, nmax, j);
          REQUIRE(qat::ops::math::float_bits(s8[j]) == qat::ops::math::float_bits(s1));
          REQUIRE(qat::ops::math::float_bits(m8[j]) == qat::ops::math::float_bits(m1));
        }
        REQUIRE(std::equal(l8, l8 + 256, l1));
      }
      // Q6_K: sub-blocks of 16, symmetric, 8 at a time.
      uint8_t q8[128], q1[128];
      float s8[8];
      k::q6k_fit_8_subblocks(xs + 256 * b, q8, s8);
      for (int j = 0; j < 8; ++j) {
        const float s1 = k::q6k_fit_subblock(xs + 256 * b + 16 * j, q1 + 16 * j);
        CAPTURE(seed, b, j);
        REQUIRE(qat::ops::math::float_bits(s8[j]) == qat::ops::math::float_bits(s1));
      }
      REQUIRE(std::equal(q8, q8 + 128, q1));
    }
  }
}

TEST_CASE("k-quants take bf16/fp16 inputs as their float32 values", "[gguf][kquant]") {
  for (const std::string fmt : {"gguf_q4_k", "gguf_q5_k", "gguf_q6_k"}) {
    const QuantSpec spec = QuantSpec::from_name(fmt);
    for (const auto dt : {at::kBFloat16, at::kHalf}) {
      CAPTURE(fmt, dt);
      const at::Tensor x = qat::test::randn({4, 768}, 3).to(dt);
      REQUIRE(at::equal(qat::ops::quantize_kquant(x, spec),
                        qat::ops::quantize_kquant(x.to(at::kFloat), spec)));
      const at::Tensor fq = qat::ops::fake_quantize_kquant(x, spec);
      REQUIRE(fq.scalar_type() == dt);
      REQUIRE(
          qat::test::bit_equal(fq, qat::ops::fake_quantize_kquant(x.to(at::kFloat), spec).to(dt)));
    }
  }
}

TEST_CASE("k-quants: a super-block with NaN fake-quantizes to NaN, its neighbours do not",
          "[gguf][kquant]") {
  const QuantSpec spec = QuantSpec::from_name("q4_k");
  at::Tensor x = qat::test::randn({2, 512}, 5);
  x[0][300] = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor y = qat::ops::fake_quantize_kquant(x, spec);
  REQUIRE(at::isnan(y[0].slice(0, 256, 512)).all().item<bool>());
  REQUIRE(at::isfinite(y[0].slice(0, 0, 256)).all().item<bool>());
  REQUIRE(qat::test::bit_equal(y[1], qat::ops::fake_quantize_kquant(x[1].unsqueeze(0), spec)[0]));
  REQUIRE_THROWS_WITH(qat::ops::quantize_kquant(x, spec), Catch::Contains("NaN or Inf"));
}

TEST_CASE("k-quant errors say what to do", "[gguf][kquant]") {
  const QuantSpec spec = QuantSpec::from_name("gguf_q6_k");
  const at::Tensor x = qat::test::randn({4, 576}, 1);  // SmolLM2's hidden size: not 256-divisible
  REQUIRE_THROWS_WITH(qat::ops::fake_quantize_dynamic(x, spec, false),
                      Catch::Contains("does not divide"));
  REQUIRE_THROWS_WITH(qat::ops::quantize_kquant(x, spec), Catch::Contains("super-blocks of 256"));
  const at::Tensor ok = qat::test::randn({4, 512}, 1);
  REQUIRE_THROWS_WITH(qat::ops::choose_qparams(ok, spec), Catch::Contains("has no qparams"));
  REQUIRE_THROWS_WITH(qat::ops::dequantize_kquant(at::zeros({2, 100}, at::kByte), spec, at::kFloat),
                      Catch::Contains("210-byte"));
  REQUIRE(QuantSpec::from_name("q4_k").to_string() == "gguf_q4_k");
  REQUIRE_THROWS_WITH(QuantSpec::from_name("gguf_q3_k"), Catch::Contains("gguf_q6_k"));
}

TEST_CASE("k-quant CUDA kernels equal the CPU reference bit for bit", "[cuda][gguf][kquant]") {
  if (!qat::test::cuda_available()) {
    WARN("no CUDA device: skipped");
    return;
  }
  for (const std::string fmt : {"gguf_q4_k", "gguf_q5_k", "gguf_q6_k"}) {
    const QuantSpec spec = QuantSpec::from_name(fmt);
    for (const auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
      CAPTURE(fmt, dt);
      const at::Tensor x = at::cat({special_rows(11), qat::test::randn({64, 512}, 12)}).to(dt);
      const at::Tensor xc = x.cuda();
      const at::Tensor blocks = qat::ops::quantize_kquant(x, spec);
      REQUIRE(at::equal(qat::ops::quantize_kquant(xc, spec).cpu(), blocks));
      REQUIRE(qat::test::bit_equal(qat::ops::dequantize_kquant(blocks.cuda(), spec, dt).cpu(),
                                   qat::ops::dequantize_kquant(blocks, spec, dt)));
      REQUIRE(qat::test::bit_equal(qat::ops::fake_quantize_kquant(xc, spec).cpu(),
                                   qat::ops::fake_quantize_kquant(x, spec)));
    }
  }
}
