// NF4Tensor storage accounting and NF4Linear: bits per parameter, bytes == formula, forward and
// backward against an independent float64 computation, from_linear, and the config errors.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "qat/nf4/nf4_linear.h"
#include "qat/nf4/nf4_tensor.h"
#include "qat/nn/linear.h"
#include "tests/support/helpers.h"

using qat::nf4::NF4Config;
using qat::nf4::NF4Linear;
using qat::nf4::NF4Tensor;

TEST_CASE("NF4 with double quant stores 4.127 bits per parameter and 4.5 without", "[nf4]") {
  const at::Tensor w = qat::test::randn({4096, 4096}, 0).to(at::kBFloat16);
  const NF4Tensor dq = NF4Tensor::quantize(w, NF4Config{64, true, 256});
  const NF4Tensor plain = NF4Tensor::quantize(w, NF4Config{64, false, 256});
  const int64_t n = w.numel(), blocks = n / 64, nested = (blocks + 255) / 256;
  // codes n/2 + absmax codes 1 B/block + nested absmax 4 B per 256 blocks + offset 4 B
  REQUIRE(dq.nbytes() == n / 2 + blocks + 4 * nested + 4);
  REQUIRE(plain.nbytes() == n / 2 + 4 * blocks);
  // The same bytes without quantizing (what memory plans count), odd sizes too.
  REQUIRE(NF4Tensor::packed_nbytes(n, NF4Config{64, true, 256}) == dq.nbytes());
  REQUIRE(NF4Tensor::packed_nbytes(n, NF4Config{64, false, 256}) == plain.nbytes());
  const at::Tensor odd = qat::test::randn({3, 1001}, 1);
  for (const bool double_quant : {true, false}) {
    const NF4Config c{128, double_quant, 256};
    REQUIRE(NF4Tensor::packed_nbytes(odd.numel(), c) == NF4Tensor::quantize(odd, c).nbytes());
  }
  // 4 + 8/64 + 32/(64*256) = 4.1270 (+ the offset, 5e-7)
  REQUIRE(dq.bits_per_param() == Approx(4.12695).margin(1e-4));
  REQUIRE(plain.bits_per_param() == 4.5);
  WARN("bits/param: double quant " << dq.bits_per_param() << ", plain " << plain.bits_per_param());
  // The double-quantized absmax stays close to the fp32 one (the map has 8 bits).
  const at::Tensor err = (dq.block_absmax() - plain.absmax()).abs().max();
  REQUIRE(err.item<float>() < 0.01f * plain.absmax().max().item<float>());
}

TEST_CASE("NF4Tensor survives to() and from_parts unchanged", "[nf4]") {
  const at::Tensor w = qat::test::randn({33, 70}, 5);
  const NF4Tensor t = NF4Tensor::quantize(w);
  const NF4Tensor moved = t.to(at::Device(at::kCPU));
  REQUIRE(qat::test::bit_equal(moved.dequantize(), t.dequantize()));
  const NF4Tensor rebuilt = NF4Tensor::from_parts(t.codes(), t.absmax(), t.nested_absmax(),
                                                  t.offset(), t.shape(), t.dtype(), t.config());
  REQUIRE(qat::test::bit_equal(rebuilt.dequantize(), t.dequantize()));
  REQUIRE_THROWS_WITH(NF4Tensor::from_parts(t.codes(), t.absmax(), t.nested_absmax(), t.offset(),
                                            {34, 70}, t.dtype(), t.config()),
                      Catch::Contains("codes must be uint8 with 1190 bytes"));
}

TEST_CASE("NF4Config errors name the field and the allowed blocksizes", "[nf4]") {
  const at::Tensor w = qat::test::randn({64, 64}, 0);
  REQUIRE_THROWS_WITH(NF4Tensor::quantize(w, NF4Config{100, true, 256}),
                      Catch::Contains("NF4Config.blocksize") && Catch::Contains("power of two"));
  REQUIRE_THROWS_WITH(NF4Tensor::quantize(w, NF4Config{64, true, 100}),
                      Catch::Contains("NF4Config.nested_blocksize"));
  REQUIRE_THROWS_WITH(NF4Tensor::quantize(at::ones({4, 4}, at::kLong)),
                      Catch::Contains("expected a float32, float16 or bfloat16 tensor"));
}

TEST_CASE("NF4Linear bytes equal the NF4 formula plus the bias", "[nf4]") {
  qat::nn::Linear dense(4096, 1024, true);
  const auto layer = NF4Linear::from_linear(dense, NF4Config{});
  const int64_t n = 4096 * 1024, blocks = n / 64, nested = (blocks + 255) / 256;
  REQUIRE(layer->nbytes() == n / 2 + blocks + 4 * nested + 4 + 1024 * 4);
  int64_t buffers = 0;
  for (const auto& b : layer->buffers()) buffers += b.numel() * b.element_size();
  REQUIRE(buffers == layer->nbytes());
  REQUIRE(layer->parameters().empty());  // nothing trainable in the base layer
}

TEST_CASE("NF4Linear forward and backward match a float64 linear on the dequantized weight",
          "[nf4]") {
  qat::nn::Linear dense(96, 40, true);
  const auto layer = NF4Linear::from_linear(dense, NF4Config{64, true, 256});
  const at::Tensor w = layer->weight().dequantize(at::kFloat);
  REQUIRE(qat::test::bit_equal(layer->effective_weight(), w));
  // The NF4 weight is within half a level of the dense one.
  REQUIRE((w - dense.weight().detach()).abs().max().item<float>() <
          0.2f * dense.weight().abs().max().item<float>());

  const at::Tensor x = qat::test::randn({3, 5, 96}, 7).requires_grad_(true);
  const at::Tensor y = layer->forward(x);
  const at::Tensor gy = qat::test::randn({3, 5, 40}, 8);
  y.backward(gy);

  const at::Tensor x64 = x.detach().to(at::kDouble).requires_grad_(true);
  const at::Tensor y64 = at::linear(x64, w.to(at::kDouble), dense.bias().detach().to(at::kDouble));
  y64.backward(gy.to(at::kDouble));
  REQUIRE(at::allclose(y.to(at::kDouble), y64, 1e-5, 1e-5));
  REQUIRE(at::allclose(x.grad().to(at::kDouble), x64.grad(), 1e-5, 1e-5));

  // bf16 inputs compute in bf16 with the weight rounded once to bf16.
  const at::Tensor xb = x.detach().to(at::kBFloat16);
  const at::Tensor yb = layer->forward(xb);
  REQUIRE(yb.scalar_type() == at::kBFloat16);
  REQUIRE(at::allclose(yb.to(at::kDouble), y64.detach(), 0.05, 0.05));
}
