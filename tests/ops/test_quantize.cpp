// The CPU reference quantizers against independent implementations: float64 math written from
// the format definitions, and ATen's fake_quantize_per_channel_affine for integer grids.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "ops/element_fake_quant.h"
#include "ops/pack.h"
#include "ops/quant_math.h"
#include "ops/quantize.h"
#include "tests/support/helpers.h"

using qat::ops::QParams;
using qat::scheme::Format;
using qat::scheme::Granularity;
using qat::scheme::QuantSpec;
using qat::scheme::ScaleDtype;

namespace {

// ---- float64 reference ------------------------------------------------------------------------

struct Reference {
  std::vector<int> codes;  // signed code values (int), unsigned otherwise
  std::vector<double> y;
  std::vector<char>
      near_tie;  // the float64 value sits within rounding noise of a decision boundary
};

double round_half_even(double v) {
  const double f = std::floor(v);
  const double d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1;
}
bool near_half(double v) {
  const double d = v - std::floor(v);
  return std::abs(d - 0.5) < 1e-4 * std::max(1.0, std::abs(v));
}

// All finite non-negative values of an fp8 format, from the definition (value, code).
std::vector<std::pair<double, int>> fp8_grid(int exp_bits, int man_bits) {
  const int bias = (1 << (exp_bits - 1)) - 1;
  std::vector<std::pair<double, int>> g;
  for (int e = 0; e < (1 << exp_bits); ++e) {
    for (int mnt = 0; mnt < (1 << man_bits); ++mnt) {
      const int code = (e << man_bits) | mnt;
      if (exp_bits == 4 && e == 15 && mnt == 7) continue;  // e4m3fn NaN
      if (exp_bits == 5 && e == 31) continue;              // e5m2 inf/NaN
      const double v = e == 0
                           ? std::ldexp(static_cast<double>(mnt), 1 - bias - man_bits)
                           : std::ldexp(1.0 + mnt / static_cast<double>(1 << man_bits), e - bias);
      g.emplace_back(v, code);
    }
  }
  return g;
}

// Nearest grid value (saturating), ties to the even code; near_tie when two are about equally near.
std::pair<int, bool> nearest(const std::vector<std::pair<double, int>>& grid, double a) {
  int best = 0;
  double bd = INFINITY, second = INFINITY;
  for (size_t i = 0; i < grid.size(); ++i) {
    const double d = std::abs(grid[i].first - a);
    if (d < bd || (d == bd && (grid[i].second % 2) == 0)) {
      second = bd;
      bd = d;
      best = static_cast<int>(i);
    } else if (d < second) {
      second = d;
    }
  }
  return {grid[best].second, std::abs(second - bd) <= 1e-5 * std::max(bd, 1e-30) + 1e-12 * a};
}

Reference reference(const at::Tensor& x_in, const QuantSpec& spec) {
  const at::Tensor x = x_in.to(at::kDouble).contiguous();
  const auto l = spec.layout(x.sizes());
  const double* xs = x.data_ptr<double>();
  std::vector<double> mn(l.count, INFINITY), mx(l.count, -INFINITY), amax(l.count, 0.0);
  for (int64_t i = 0; i < l.numel; ++i) {
    const int64_t g = (i / l.inner) % l.count;
    mn[g] = std::min(mn[g], xs[i]);
    mx[g] = std::max(mx[g], xs[i]);
    amax[g] = std::max(amax[g], std::abs(xs[i]));
  }
  Reference r;
  r.codes.resize(l.numel);
  r.y.resize(l.numel);
  r.near_tie.resize(l.numel);
  const int bits = spec.bits;
  const auto e4 = fp8_grid(4, 3), e5 = fp8_grid(5, 2);
  const double nf4[16] = {-1.0,
                          -0.6961928009986877,
                          -0.5250730514526367,
                          -0.39491748809814453,
                          -0.28444138169288635,
                          -0.18477343022823334,
                          -0.09105003625154495,
                          0.0,
                          0.07958029955625534,
                          0.16093020141124725,
                          0.24611230194568634,
                          0.33791524171829224,
                          0.44070982933044434,
                          0.5626170039176941,
                          0.7229568362236023,
                          1.0};
  for (int64_t i = 0; i < l.numel; ++i) {
    const int64_t g = (i / l.inner) % l.count;
    switch (spec.format) {
      case Format::kInt: {
        const double qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
        const double s = amax[g] > 0 ? amax[g] / qmax : 1.0;
        const double v = xs[i] / s;
        const double c = std::clamp(round_half_even(v), qmin, qmax);
        r.codes[i] = static_cast<int>(c);
        r.y[i] = c * s;
        r.near_tie[i] = near_half(v);
        break;
      }
      case Format::kUInt: {
        const double qmax = (1 << bits) - 1;
        const double lo = std::min(mn[g], 0.0), hi = std::max(mx[g], 0.0);
        const double s = hi > lo ? (hi - lo) / qmax : 1.0;
        const double zp = std::clamp(-round_half_even(lo / s), 0.0, qmax);
        const double v = xs[i] / s;
        const double c = std::clamp(round_half_even(v) + zp, 0.0, qmax);
        r.codes[i] = static_cast<int>(c);
        r.y[i] = (c - zp) * s;
        r.near_tie[i] = near_half(v) || near_half(lo / s);
        break;
      }
      case Format::kFp8E4M3:
      case Format::kFp8E5M2: {
        const bool is4 = spec.format == Format::kFp8E4M3;
        const double fmax = is4 ? 448.0 : 57344.0;
        const double s = amax[g] > 0 ? amax[g] / fmax : 1.0;
        const double v = xs[i] / s;
        auto [code, tie] = nearest(is4 ? e4 : e5, std::abs(v));
        const auto& grid = is4 ? e4 : e5;
        double val = 0;
        for (auto& p : grid)
          if (p.second == code) val = p.first;
        r.codes[i] = code | (std::signbit(v) ? 0x80 : 0);
        r.y[i] = (std::signbit(v) ? -val : val) * s;
        r.near_tie[i] = tie || std::abs(v) == 0.0;
        break;
      }
      case Format::kNf4: {
        const double s = amax[g];
        const double v = s > 0 ? xs[i] / s : 0.0;
        int best = 0;
        double bd = INFINITY, second = INFINITY;
        for (int c = 0; c < 16; ++c) {
          const double d = std::abs(nf4[c] - v);
          if (d < bd) {
            second = bd;
            bd = d;
            best = c;
          } else if (d < second) {
            second = d;
          }
        }
        r.codes[i] = best;
        r.y[i] = nf4[best] * s;
        r.near_tie[i] = std::abs(second - bd) < 1e-6;
        break;
      }
      default:
        FAIL("no float64 reference for this format (GGUF formats are checked against gguf-py)");
    }
  }
  return r;
}

std::vector<int> our_codes(const at::Tensor& codes, const QuantSpec& spec) {
  const at::Tensor c =
      spec.format == Format::kInt ? codes.view(at::kChar).to(at::kInt) : codes.to(at::kInt);
  return std::vector<int>(c.data_ptr<int>(), c.data_ptr<int>() + c.numel());
}

struct Case {
  std::string format;
  Granularity granularity;
  std::vector<int64_t> shape;
};

std::vector<Case> format_by_granularity_grid() {
  std::vector<Case> cases;
  const std::vector<std::string> formats{"int2",  "int3",  "int4",     "int8",    "uint2",
                                         "uint4", "uint8", "fp8_e4m3", "fp8_e5m2"};
  const std::vector<std::pair<Granularity, std::vector<int64_t>>> grans{
      {Granularity::per_tensor(), {37, 64}},    {Granularity::per_axis(0), {48, 96}},
      {Granularity::per_axis(1), {6, 20, 16}},  {Granularity::per_axis(-1), {33, 24}},
      {Granularity::per_group(16), {20, 64}},   {Granularity::per_group(32), {7, 128}},
      {Granularity::per_group(128), {24, 256}}, {Granularity::per_token(), {3, 11, 80}}};
  for (const auto& f : formats)
    for (const auto& [g, shape] : grans) cases.push_back({f, g, shape});
  cases.push_back({"nf4", Granularity::per_group(64), {16, 256}});
  cases.push_back({"nf4", Granularity::per_group(32), {5, 96}});
  cases.push_back({"nf4", Granularity::per_group(256), {8, 512}});
  return cases;
}

}  // namespace

TEST_CASE("quantize matches a float64 implementation for every format x granularity",
          "[quantize]") {
  for (const Case& c : format_by_granularity_grid()) {
    const QuantSpec spec = QuantSpec::from_name(c.format).with(c.granularity);
    for (uint64_t seed : {1u, 2u, 3u}) {
      CAPTURE(c.format, c.granularity.to_string(), c.shape, seed);
      const at::Tensor x =
          seed == 3 ? qat::test::adversarial(c.shape, seed) : qat::test::randn(c.shape, seed);
      const QParams qp = qat::ops::choose_qparams(x, spec);
      const std::vector<int> got = our_codes(qat::ops::quantize(x, spec, qp), spec);
      const at::Tensor y =
          qat::ops::dequantize(qat::ops::quantize(x, spec, qp), spec, qp, at::kFloat);
      const Reference ref = reference(x, spec);
      int64_t ties = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        if (ref.near_tie[i]) {
          ++ties;
          continue;  // float32 vs float64 rounding may legitimately pick either neighbour
        }
        CAPTURE(i, x.view(-1)[i].item<float>());
        REQUIRE(got[i] == ref.codes[i]);
        const double yv = y.view(-1)[i].item<float>();
        REQUIRE(std::abs(yv - ref.y[i]) <= 1e-6 * std::max(1.0, std::abs(ref.y[i])));
      }
      // The exemption must stay an exception, or the test would check nothing.
      REQUIRE(ties <= static_cast<int64_t>(got.size()) / 5);
    }
  }
}

TEST_CASE("fake quant equals dequantize(quantize(x)) bit for bit", "[quantize][fake_quant]") {
  const std::vector<std::string> formats{"int2",      "int4",      "int5",     "int8",     "uint3",
                                         "uint4",     "uint8",     "fp8_e4m3", "fp8_e5m2", "nf4",
                                         "gguf_q8_0", "gguf_q4_0", "gguf_q4_1"};
  const auto dtype = GENERATE(at::kFloat, at::kBFloat16, at::kHalf);
  for (const auto& f : formats) {
    QuantSpec spec = QuantSpec::from_name(f);
    if (spec.traits().fixed_block == 0 && spec.format != Format::kNf4)
      spec.granularity = Granularity::per_group(32);
    for (uint64_t seed = 0; seed < 6; ++seed) {
      CAPTURE(f, dtype, seed);
      const at::Tensor x =
          (seed % 2 ? qat::test::adversarial({12, 128}, seed) : qat::test::randn({12, 128}, seed))
              .to(dtype);
      const QParams qp = qat::ops::choose_qparams(x, spec);
      const at::Tensor fq = qat::ops::fake_quantize(x, spec, qp, false).y;
      const at::Tensor dq = qat::ops::dequantize(qat::ops::quantize(x, spec, qp), spec, qp, dtype);
      REQUIRE(qat::test::bit_equal(fq, dq));
      const auto dyn = qat::ops::fake_quantize_dynamic(x, spec, false);
      REQUIRE(qat::test::bit_equal(dyn.y, fq));
    }
  }
}

TEST_CASE("integer fake quant matches ATen's fake_quantize_per_channel_affine exactly",
          "[quantize][aten]") {
  for (const std::string f : {"int4", "int8", "uint4", "uint8", "int2"}) {
    for (int64_t g : {16, 64}) {
      const QuantSpec spec = QuantSpec::from_name(f).with(Granularity::per_group(g));
      for (uint64_t seed = 0; seed < 4; ++seed) {
        CAPTURE(f, g, seed);
        const at::Tensor x =
            seed % 2 ? qat::test::adversarial({16, 256}, seed) : qat::test::randn({16, 256}, seed);
        const QParams qp = qat::ops::choose_qparams(x, spec);
        const auto ours = qat::ops::fake_quantize(x, spec, qp, true);
        // per-group == per-channel after reshape(-1, g); ATen wants int zero points.
        const auto r = spec.code_range();
        const at::Tensor zp = qp.zero.reshape({-1}).to(at::kInt);
        const auto [ref, mask] = at::fake_quantize_per_channel_affine_cachemask(
            x.reshape({-1, g}), qp.scale.reshape({-1}), zp, 0, r.qmin, r.qmax);
        REQUIRE(qat::test::bit_equal(ours.y, ref.view(x.sizes())));
        REQUIRE(at::equal(ours.mask, mask.view(x.sizes())));
      }
    }
  }
}

TEST_CASE("scale dtype rounding: fp16 and bf16 scales are stored exactly as used", "[quantize]") {
  for (auto dt : {ScaleDtype::kFloat16, ScaleDtype::kBFloat16}) {
    QuantSpec spec = QuantSpec::from_name("int4").with(Granularity::per_group(32));
    spec.scale_dtype = dt;
    const at::Tensor x = qat::test::randn({8, 128}, 5, 0.02);
    const QParams qp = qat::ops::choose_qparams(x, spec);
    const at::Tensor rt = qp.scale.to(qat::scheme::to_scalar_type(dt)).to(at::kFloat);
    REQUIRE(qat::test::bit_equal(rt, qp.scale));
    // And the scale is the float64 rule rounded once: amax/7 -> nearest in the dtype.
    const at::Tensor amax = x.abs().reshape({-1, 32}).amax(1).to(at::kDouble);
    const at::Tensor expect =
        (amax / 7.0).to(at::kFloat).to(qat::scheme::to_scalar_type(dt)).to(at::kFloat);
    REQUIRE(at::allclose(expect, qp.scale.reshape({-1}), 0, 0));
  }
}

TEST_CASE("packing codes round-trips for every bit width", "[pack]") {
  for (const std::string f :
       {"int2", "int3", "int4", "int6", "int8", "uint2", "uint4", "uint7", "fp8_e4m3", "nf4"}) {
    QuantSpec spec = QuantSpec::from_name(f);
    if (spec.format != Format::kNf4) spec.granularity = Granularity::per_group(16);
    const at::Tensor x = qat::test::adversarial({6, 64}, 11);
    const QParams qp = qat::ops::choose_qparams(x, spec);
    const at::Tensor codes = qat::ops::quantize(x, spec, qp);
    const at::Tensor packed = qat::ops::pack_codes(codes, spec);
    CAPTURE(f);
    REQUIRE(packed.size(-1) == 64 * qat::scheme::storage_bits(spec.bits) / 8);
    REQUIRE(at::equal(qat::ops::unpack_codes(packed, spec), codes));
  }
  SECTION("int4 packs the first element in the low nibble, nf4 in the high nibble") {
    const at::Tensor codes = at::tensor({1, 2, 3, 4}, at::kByte).view({1, 4});
    QuantSpec i4 = QuantSpec::from_name("uint4");
    REQUIRE(qat::ops::pack_codes(codes, i4).view(-1)[0].item<uint8_t>() == 0x21);
    REQUIRE(qat::ops::pack_codes(codes, QuantSpec::from_name("nf4")).view(-1)[0].item<uint8_t>() ==
            0x12);
  }
}

TEST_CASE("all-zero groups, NaN inputs and non-finite quantize inputs follow the stated policy",
          "[quantize]") {
  const QuantSpec spec = QuantSpec::from_name("int4").with(Granularity::per_group(16));
  at::Tensor x = at::zeros({2, 32});
  const QParams qp = qat::ops::choose_qparams(x, spec);
  REQUIRE(at::equal(qp.scale, at::ones_like(qp.scale)));  // an all-zero group gets scale 1
  REQUIRE(at::equal(qat::ops::fake_quantize(x, spec, qp, false).y, x));
  x[0][3] = NAN;
  const at::Tensor y = qat::ops::fake_quantize(x, spec, qp, false).y;
  REQUIRE(std::isnan(y[0][3].item<float>()));  // NaN propagates so the trainer sees it
  REQUIRE_THROWS_WITH(qat::ops::quantize(x, spec, qp), Catch::Contains("NaN or Inf"));
  // NaN elements do not enter the statistics: the group's scale comes from the other elements,
  // in any position (so reductions in any order agree).
  const QuantSpec u8 = QuantSpec::from_name("uint8").with(Granularity::per_group(16));
  at::Tensor v = qat::test::randn({1, 16}, 4);
  v[0][0] = -3.0f;
  v[0][9] = 2.0f;
  const QParams clean = qat::ops::choose_qparams(v, u8);
  for (int pos : {1, 8, 15}) {
    at::Tensor w = v.clone();
    w[0][pos] = NAN;
    const QParams q = qat::ops::choose_qparams(w, u8);
    CAPTURE(pos);
    REQUIRE(qat::test::bit_equal(q.scale, clean.scale));
    REQUIRE(qat::test::bit_equal(q.zero, clean.zero));
  }
  // Signed zeros: an all-zero q4_0 block starting with -0 still gets d = +0/-8 (= -0.0) the same
  // way whatever the order; min/max order -0 below +0.
  const QuantSpec q40 = QuantSpec::from_name("gguf_q4_0");
  at::Tensor z = at::zeros({1, 32});
  z[0][0] = -0.0f;
  const at::Tensor st = qat::ops::group_stats(z, q40);
  REQUIRE(std::signbit(st[0][0].item<float>()));   // min = -0
  REQUIRE(!std::signbit(st[0][1].item<float>()));  // max = +0
  REQUIRE(!std::signbit(st[0][3].item<float>()));  // signed max|x| keeps the initial +0
}

TEST_CASE("group statistics equal folding stats_add over each group in order", "[quantize]") {
  // The CPU kernel computes them with integer keys and a second pass for the signed max, so that
  // it vectorizes; the definition is the scalar fold in ops/quant_math.h.
  namespace m = qat::ops::math;
  const auto dtype = GENERATE(at::kFloat, at::kBFloat16, at::kHalf);
  // Groups of 16..256 elements, and per token: one group per row of 3 or 37 elements.
  for (int64_t g : {3, 16, 32, 37, 48, 256}) {
    const QuantSpec spec = QuantSpec::from_name("int4").with(g % 16 ? Granularity::per_token()
                                                                    : Granularity::per_group(g));
    for (uint64_t seed = 0; seed < 4; ++seed) {
      const int64_t cols = g % 16 ? g : g * 8;
      at::Tensor x =
          (seed % 2 ? qat::test::adversarial({4, cols}, seed) : qat::test::randn({4, cols}, seed));
      float* p = x.data_ptr<float>();
      const int64_t n = x.numel();
      for (int64_t i = 0; i < n; i += 7) p[i] = -p[(i + 3) % n];  // equal |x| of both signs
      for (int64_t i = 5; i < n; i += 11) p[i] = (i % 3 == 0) ? -0.0f : 0.0f;
      if (seed == 2) {
        for (int64_t i = 2; i < n; i += 13) p[i] = (i % 2) ? NAN : ((i % 3) ? INFINITY : -INFINITY);
      }
      if (seed == 3) x.narrow(1, 0, g).fill_(-0.0f);  // a group of zeros, -0 first
      x = x.to(dtype);
      const at::Tensor got = qat::ops::group_stats(x, spec);
      const at::Tensor xf = x.to(at::kFloat).contiguous();
      for (int64_t grp = 0; grp < got.size(0); ++grp) {
        m::GroupStats want = m::stats_init();
        for (int64_t j = 0; j < g; ++j) m::stats_add(want, xf.data_ptr<float>()[grp * g + j]);
        const float* st = got.data_ptr<float>() + 4 * grp;
        CAPTURE(dtype, g, seed, grp);
        REQUIRE(m::float_bits(st[0]) == m::float_bits(want.min));
        REQUIRE(m::float_bits(st[1]) == m::float_bits(want.max));
        REQUIRE(m::float_bits(st[2]) == m::float_bits(want.amax));
        REQUIRE(m::float_bits(st[3]) == m::float_bits(want.signed_amax));
      }
    }
  }
}

TEST_CASE("fake quant in bf16 and fp16 is the float32 result rounded by libtorch",
          "[quantize][fake_quant]") {
  // The CPU loops store bf16 with their own branch-free rounding; it must give libtorch's bits.
  const auto dtype = GENERATE(at::kBFloat16, at::kHalf);
  for (const char* f : {"int4", "uint4", "int8", "gguf_q4_0", "gguf_q8_0", "gguf_q4_1"}) {
    QuantSpec spec = QuantSpec::from_name(f);
    if (spec.traits().fixed_block == 0) spec.granularity = Granularity::per_group(32);
    for (uint64_t seed = 0; seed < 4; ++seed) {
      at::Tensor x =
          (seed % 2 ? qat::test::adversarial({8, 256}, seed) : qat::test::randn({8, 256}, seed))
              .to(dtype);
      x[1][7] = NAN;
      const QParams qp = qat::ops::choose_qparams(x.to(at::kFloat), spec);
      const at::Tensor got = qat::ops::fake_quantize(x, spec, qp, false).y;
      const at::Tensor want =
          qat::ops::fake_quantize(x.to(at::kFloat), spec, qp, false).y.to(dtype);
      CAPTURE(f, dtype, seed);
      // NaN stays NaN; its bits are not compared: libtorch's own float->bf16 gives 0x7fc0 in
      // the scalar conversion and 0xffff in the vectorized one.
      REQUIRE(at::equal(got.isnan(), x.isnan()));
      REQUIRE(at::equal(want.isnan(), x.isnan()));
      const at::Tensor finite = ~x.isnan();
      REQUIRE(at::equal(got.view(at::kShort).masked_select(finite),
                        want.view(at::kShort).masked_select(finite)));
    }
  }
}

TEST_CASE("bad quantization configs give clear errors", "[quantize][errors]") {
  REQUIRE_THROWS_WITH(QuantSpec::from_name("int9"), Catch::Contains("takes 2..8 bits, got bits=9"));
  REQUIRE_THROWS_WITH(QuantSpec::from_name("int1"), Catch::Contains("takes 2..8 bits"));
  REQUIRE_THROWS_WITH(QuantSpec::from_name("float3"),
                      Catch::Contains("unknown quantization format 'float3'"));
  REQUIRE_THROWS_WITH(QuantSpec::from_name("intx"), Catch::Contains("unknown quantization format"));
  const QuantSpec g48 = QuantSpec::from_name("int4").with(Granularity::per_group(48));
  REQUIRE_THROWS_WITH(qat::ops::choose_qparams(at::zeros({4, 64}), g48),
                      Catch::Contains("group size 48 does not divide the last dimension (64)"));
  REQUIRE_THROWS_WITH(QuantSpec::from_name("int4").with(Granularity::per_group(8)).validate(),
                      Catch::Contains("group size must be in [16, 256], got 8"));
  REQUIRE_THROWS_WITH(QuantSpec::from_name("gguf_q4_0").with(Granularity::per_group(64)).validate(),
                      Catch::Contains("fixed blocks of 32"));
  QuantSpec q8 = QuantSpec::from_name("gguf_q8_0");
  q8.scale_dtype = ScaleDtype::kFloat32;
  REQUIRE_THROWS_WITH(q8.validate(), Catch::Contains("stores its scales as float16"));
  REQUIRE_THROWS_WITH(QuantSpec::from_name("nf4").with(Granularity::per_tensor()).validate(),
                      Catch::Contains("nf4 is blockwise"));
  REQUIRE_THROWS_WITH(
      qat::ops::choose_qparams(at::zeros({4, 8}, at::kInt), QuantSpec::from_name("int8")),
      Catch::Contains("expected a float32, float16 or bfloat16 tensor"));
  REQUIRE_THROWS_WITH(
      QuantSpec::from_name("int8").with(Granularity::per_axis(2)).validate_for({4, 8}),
      Catch::Contains("axis 2 is out of range"));
  const QuantSpec i8 = QuantSpec::from_name("int8").with(Granularity::per_axis(0));
  REQUIRE_THROWS_WITH(
      qat::ops::fake_quantize(at::zeros({4, 8}), i8, QParams{at::ones({3}), {}}, false),
      Catch::Contains("expected 4 scales"));
}

TEST_CASE("ElementFakeQuant gives fake_quantize's output one element at a time", "[quantize]") {
  at::manual_seed(11);
  struct Case {
    std::string fmt;
    Granularity g;
  };
  const std::vector<Case> cases = {{"int4", Granularity::per_group(32)},
                                   {"uint3", Granularity::per_axis(0)},
                                   {"int8", Granularity::per_tensor()},
                                   {"uint8", Granularity::per_axis(1)},
                                   {"fp8_e4m3", Granularity::per_axis(0)},
                                   {"fp8_e5m2", Granularity::per_tensor()},
                                   {"nf4", {}},
                                   {"gguf_q8_0", {}},
                                   {"gguf_q4_0", {}},
                                   {"gguf_q4_1", {}},
                                   {"gguf_q5_0", {}},
                                   {"gguf_q5_1", {}}};
  for (const auto& c : cases) {
    for (const auto dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      DYNAMIC_SECTION(c.fmt << " " << dtype) {
        QuantSpec spec = QuantSpec::from_name(c.fmt);
        if (spec.traits().fixed_block == 0 && spec.format != Format::kNf4) spec.granularity = c.g;
        at::Tensor x = (at::randn({16, 128}) * 3).to(dtype);
        x[0][0] = 0.0;
        x[1].fill_(-0.5);
        const QParams qp = qat::ops::choose_qparams(x, spec);
        const at::Tensor y = qat::ops::fake_quantize(x, spec, qp, false).y.to(at::kFloat);
        const qat::ops::ElementFakeQuant efq(spec, qp, dtype);
        const auto l = spec.layout(x.sizes());
        REQUIRE(efq.groups() == l.count);
        const at::Tensor xf = x.to(at::kFloat).contiguous();
        const float* xs = xf.data_ptr<float>();
        const float* ys = y.data_ptr<float>();
        int64_t differ = 0;
        for (int64_t i = 0; i < x.numel(); ++i) {
          const float got = efq(xs[i], (i / l.inner) % l.count);
          if (std::memcmp(&got, &ys[i], sizeof(float)) != 0) ++differ;
        }
        CHECK(differ == 0);
        // to_dtype rounds as a tensor of dtype stores.
        const at::Tensor r = at::randn({1000});
        const at::Tensor rr = r.to(dtype).to(at::kFloat);
        for (int64_t i = 0; i < 1000; ++i)
          CHECK(efq.to_dtype(r[i].item<float>()) == rr[i].item<float>());
      }
    }
  }
  CHECK_THROWS_WITH(qat::ops::ElementFakeQuant(QuantSpec::from_name("gguf_q4_k"),
                                               qat::ops::QParams{at::ones({1}), {}}, at::kFloat),
                    Catch::Contains("k-quants"));
}
