// The scalar conversions of ops/quant_math.h against libtorch's own (independent) conversions.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "ops/quant_math.h"
#include "tests/support/helpers.h"

namespace m = qat::ops::math;

namespace {

// Float inputs that cover every binade, subnormals, the overflow edges and exact ties.
at::Tensor probe_floats() {
  std::vector<float> v;
  for (int e = -140; e <= 20; ++e) {
    for (int k = 0; k < 64; ++k) {
      const float base = std::ldexp(1.0f + k / 64.0f, e);
      v.push_back(base);
      v.push_back(-base);
      v.push_back(std::nextafter(base, 0.0f));
      v.push_back(std::nextafter(base, INFINITY));
    }
  }
  for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 448.0f, 464.0f, 480.0f, 57344.0f,
                  61440.0f, 1e30f, INFINITY, -INFINITY})
    v.push_back(f);
  at::Tensor t = at::tensor(v);
  return at::cat({t, qat::test::randn({20000}, 7, 100.0)});
}

}  // namespace

TEST_CASE("fp16 rounding of scales matches libtorch's float->half conversion", "[math]") {
  const at::Tensor x = probe_floats();
  const at::Tensor ref = x.to(at::kHalf).view(at::kShort);
  const float* xs = x.data_ptr<float>();
  const int16_t* rs = ref.data_ptr<int16_t>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    CAPTURE(xs[i]);
    REQUIRE(m::float_to_half_bits(xs[i]) == static_cast<uint16_t>(rs[i]));
    const float back = m::half_bits_to_float(static_cast<uint16_t>(rs[i]));
    REQUIRE(back ==
            static_cast<float>(c10::Half(static_cast<uint16_t>(rs[i]), c10::Half::from_bits())));
  }
}

TEST_CASE("bf16 rounding of scales matches libtorch's float->bfloat16 conversion", "[math]") {
  const at::Tensor x = probe_floats();
  const at::Tensor ref = x.to(at::kBFloat16).view(at::kShort);
  const float* xs = x.data_ptr<float>();
  const int16_t* rs = ref.data_ptr<int16_t>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    CAPTURE(xs[i]);
    REQUIRE(m::float_to_bf16_bits(xs[i]) == static_cast<uint16_t>(rs[i]));
  }
}

TEST_CASE("fp8 encode saturates and rounds like libtorch's fp8 casts of clamped values",
          "[math][fp8]") {
  const at::Tensor x = probe_floats();
  const float* xs = x.data_ptr<float>();
  SECTION("e4m3") {
    const at::Tensor ref = x.clamp(-448.0, 448.0).to(at::kFloat8_e4m3fn).view(at::kByte);
    const uint8_t* rs = ref.data_ptr<uint8_t>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      CAPTURE(xs[i]);
      REQUIRE(m::float_to_fp8<m::E4M3>(xs[i]) == rs[i]);
    }
  }
  SECTION("e5m2") {
    const at::Tensor ref = x.clamp(-57344.0, 57344.0).to(at::kFloat8_e5m2).view(at::kByte);
    const uint8_t* rs = ref.data_ptr<uint8_t>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      CAPTURE(xs[i]);
      REQUIRE(m::float_to_fp8<m::E5M2>(xs[i]) == rs[i]);
    }
  }
}

TEST_CASE("fp8 decode of every byte matches libtorch", "[math][fp8]") {
  const at::Tensor codes = at::arange(256, at::kInt).to(at::kByte);
  const at::Tensor e4 = codes.view(at::kFloat8_e4m3fn).to(at::kFloat);
  const at::Tensor e5 = codes.view(at::kFloat8_e5m2).to(at::kFloat);
  for (int c = 0; c < 256; ++c) {
    CAPTURE(c);
    const float a = m::fp8_to_float<m::E4M3>(static_cast<uint8_t>(c));
    const float b = e4[c].item<float>();
    REQUIRE(((std::isnan(a) && std::isnan(b)) || m::float_bits(a) == m::float_bits(b)));
    const float a5 = m::fp8_to_float<m::E5M2>(static_cast<uint8_t>(c));
    const float b5 = e5[c].item<float>();
    REQUIRE(((std::isnan(a5) && std::isnan(b5)) || m::float_bits(a5) == m::float_bits(b5)));
  }
}

TEST_CASE("NF4 codes are the nearest table value with ties to the lower code", "[math][nf4]") {
  // Independent float64 rule: nearest value; exact midpoints (bitsandbytes' thresholds) go lower.
  const at::Tensor y =
      at::cat({at::linspace(-1.0, 1.0, 20001), qat::test::randn({5000}, 3, 0.4).clamp(-1, 1)});
  for (int64_t i = 0; i < y.numel(); ++i) {
    const float v = y[i].item<float>();
    int best = 0;
    double best_d = INFINITY;
    for (int c = 0; c < 16; ++c) {
      const double d = std::abs(static_cast<double>(v) - static_cast<double>(m::nf4_value(c)));
      if (d < best_d - 1e-7) {  // strictly nearer (beyond float rounding of the midpoints)
        best_d = d;
        best = c;
      }
    }
    CAPTURE(v);
    const int got = m::nf4_code(v);
    // Within 1e-7 of a midpoint the literal thresholds decide; elsewhere the nearest value.
    if (got != best) REQUIRE(std::abs(std::abs(v - m::nf4_value(got)) - best_d) < 1e-7);
  }
  REQUIRE(m::nf4_code(0.0f) == 7);
  REQUIRE(m::nf4_code(1.0f) == 15);
  REQUIRE(m::nf4_code(-1.0f) == 0);
  REQUIRE(m::nf4_code(0.03979014977812767f) == 7);  // a threshold itself goes to the lower code
}

TEST_CASE("the host's branch-free rounding equals libm's nearbyint, round and trunc", "[math]") {
  // quant_math.h rounds on the host without libm calls so that the CPU loops vectorize; every
  // code of every integer and GGUF format goes through these three functions.
  auto same = [](float got, float want) {
    return (std::isnan(got) && std::isnan(want)) || m::float_bits(got) == m::float_bits(want);
  };
  auto check = [&](float v) {
    CAPTURE(v, m::float_bits(v));
    REQUIRE(same(m::round_even(v), std::nearbyint(v)));
    REQUIRE(same(m::round_away(v), std::round(v)));
    REQUIRE(same(m::trunc_f(v), std::trunc(v)));
  };
  const at::Tensor x = probe_floats();
  for (int64_t i = 0; i < x.numel(); ++i) check(x.data_ptr<float>()[i]);
  for (float v : {NAN, -NAN, 0.49999997f, -0.49999997f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 8388607.5f,
                  -8388607.5f, 8388608.0f, 8388609.0f, 16777216.0f, 3e9f, -3e9f})
    check(v);
  // Every tie k + 1/2 up to 2^23 (above, floats are integers), and both neighbours of each.
  for (int32_t k = 0; k < (1 << 23); k += 1 + k / 64) {
    const float t = static_cast<float>(k) + 0.5f;
    for (float v : {t, -t, std::nextafter(t, 0.0f), std::nextafter(t, INFINITY)}) check(v);
  }
  // Random bit patterns: every binade, NaN payloads and infinities included.
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 2000000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    check(m::bits_float(static_cast<uint32_t>(state >> 32)));
  }
}
