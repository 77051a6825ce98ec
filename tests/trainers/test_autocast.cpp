// Which precision a run gets (CUDA, CPU with and without bf16 instructions), and the autocast
// guard on the CPU: libtorch's own autocast lowers a linear to bf16 inside it and restores the
// previous state after.
#include <ATen/autocast_mode.h>

#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/autocast.h"

using namespace qat;
using train::Autocast;

TEST_CASE("precision: bf16 on CUDA unless off, on the CPU only when asked and supported",
          "[autocast]") {
  for (const bool cpu_bf16 : {false, true}) {
    CHECK(train::resolve_precision(train::Device::kCuda, Autocast::kAuto, cpu_bf16).bf16);
    CHECK(train::resolve_precision(train::Device::kCuda, Autocast::kBf16, cpu_bf16).bf16);
    CHECK_FALSE(train::resolve_precision(train::Device::kCuda, Autocast::kOff, cpu_bf16).bf16);
    CHECK_FALSE(train::resolve_precision(train::Device::kCpu, Autocast::kAuto, cpu_bf16).bf16);
    CHECK_FALSE(train::resolve_precision(train::Device::kCpu, Autocast::kOff, cpu_bf16).bf16);
  }
  CHECK(train::resolve_precision(train::Device::kCpu, Autocast::kBf16, true).bf16);
  const train::Precision fallback =
      train::resolve_precision(train::Device::kCpu, Autocast::kBf16, false);
  CHECK_FALSE(fallback.bf16);
  CHECK_THAT(fallback.reason, Catch::Contains("float32") && Catch::Contains("AVX512_BF16"));

  train::TrainSection t;
  t.device = train::Device::kCpu;
  t.autocast = Autocast::kBf16;
  CHECK(t.bf16() == train::cpu_has_bf16_matmul());
  t.autocast = Autocast::kAuto;
  CHECK_FALSE(t.bf16());
}

TEST_CASE("the CPU autocast guard runs linears in bf16 and restores the state", "[autocast]") {
  const at::Tensor x = qat::test::randn({4, 64}, 1), w = qat::test::randn({32, 64}, 2);
  REQUIRE_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
  at::Tensor y;
  {
    train::AutocastGuard guard(at::kCPU, true);
    CHECK(at::autocast::is_autocast_enabled(at::kCPU));
    y = at::linear(x, w);
  }
  CHECK_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
  CHECK(y.scalar_type() == at::kBFloat16);
  // bf16 operands, float accumulation, a bf16 result: the float product of the rounded operands,
  // to bf16's precision.
  const at::Tensor ref =
      at::linear(x.to(at::kBFloat16).to(at::kFloat), w.to(at::kBFloat16).to(at::kFloat));
  CHECK(at::allclose(y.to(at::kFloat), ref, 1e-2, 1e-2));
  CHECK(at::linear(x, w).scalar_type() == at::kFloat);
  {
    train::AutocastGuard off(at::kCPU, false);
    CHECK(at::linear(x, w).scalar_type() == at::kFloat);
  }
}
