// NF4 dequantize throughput (plain and with double quant) as a fraction of a device-to-device
// copy of the output, and NF4Linear forward+backward against a dense linear of the same shape,
// each baseline measured in the same run. Prints one JSON line per figure.
//
//   bench_nf4 [--device cpu|cuda] [--m M] [--k K] [--n N] [--iters I]
// Defaults: CPU, a small layer (M=256 tokens, K=1024 in, N=1024 out). With --device cuda the
// defaults become a Llama-3-8B MLP projection, K=4096 -> N=14336 at M=2048 (try --m 8192 too).
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#if defined(QAT_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "bench/bench_timing.h"
#include "ops/nf4.h"
#include "qat/nf4/nf4_linear.h"
#include "qat/nn/linear.h"

namespace {

using qat::bench::time_ms;

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu";
  int64_t m = -1, k = -1, n = -1;
  int iters = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    if (!std::strcmp(argv[i], "--m")) m = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--k")) k = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--n")) n = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
  }
  const bool cuda = device == "cuda";
#if defined(QAT_WITH_CUDA)
  if (cuda && !at::cuda::is_available()) {
    std::fprintf(stderr, "bench_nf4: --device cuda but no CUDA device is available\n");
    return 1;
  }
#else
  if (cuda) {
    std::fprintf(stderr, "bench_nf4: this build has no CUDA support\n");
    return 1;
  }
#endif
  if (m < 0) m = cuda ? 2048 : 256;
  if (k < 0) k = cuda ? 4096 : 1024;
  if (n < 0) n = cuda ? 14336 : 1024;
  const at::Device dev = cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  const auto opts = at::TensorOptions().dtype(at::kBFloat16).device(dev);
  const double elems = static_cast<double>(n * k);

  // ---- dequantize vs copy of the bf16 output -------------------------------------------------
  const at::Tensor w = at::randn({n, k}, opts);
  at::Tensor out = at::empty_like(w);
  const double copy_ms = time_ms(dev, iters, [&] { out.copy_(w); });
  for (const bool dq : {false, true}) {
    const qat::nf4::NF4Config config{64, dq, 256};
    const auto t = qat::nf4::NF4Tensor::quantize(w, config);
    // Quantizing happens once per base weight (QLoRA's model load); dequantizing every step.
    const double quantize_ms =
        time_ms(dev, std::max(1, iters / 4), [&] { qat::nf4::NF4Tensor::quantize(w, config); });
    std::printf(
        "{\"bench\":\"nf4_quantize\",\"device\":\"%s\",\"double_quant\":%s,\"shape\":[%lld,%lld],"
        "\"ms\":%.4f,\"ratio_to_copy\":%.3f}\n",
        device.c_str(), dq ? "true" : "false", (long long)n, (long long)k, quantize_ms,
        quantize_ms / copy_ms);
    const double ms = time_ms(dev, iters, [&] { t.dequantize(at::kBFloat16); });
    const double gbps = 2 * elems / (ms * 1e6);  // output bytes written per second
    std::printf(
        "{\"bench\":\"nf4_dequantize\",\"device\":\"%s\",\"double_quant\":%s,\"shape\":[%lld,%lld],"
        "\"bits_per_param\":%.4f,\"ms\":%.4f,\"out_gbps\":%.2f,\"copy_ms\":%.4f,"
        "\"ratio_to_copy\":%.3f}\n",
        device.c_str(), dq ? "true" : "false", (long long)n, (long long)k, t.bits_per_param(), ms,
        gbps, copy_ms, ms / copy_ms);
  }

  // ---- dequantize to float32 (CPU training's dtype) vs a float32 copy
  // ----------------------------
  {
    const at::Tensor w32 = w.to(at::kFloat);
    at::Tensor out32 = at::empty_like(w32);
    const double copy32_ms = time_ms(dev, iters, [&] { out32.copy_(w32); });
    const auto t = qat::nf4::NF4Tensor::quantize(w, qat::nf4::NF4Config{});
    const double ms = time_ms(dev, iters, [&] { t.dequantize(at::kFloat); });
    std::printf(
        "{\"bench\":\"nf4_dequantize\",\"device\":\"%s\",\"double_quant\":true,\"out\":\"fp32\","
        "\"shape\":[%lld,%lld],\"ms\":%.4f,\"out_gbps\":%.2f,\"copy_ms\":%.4f,"
        "\"ratio_to_copy\":%.3f}\n",
        device.c_str(), (long long)n, (long long)k, ms, 4 * elems / (ms * 1e6), copy32_ms,
        ms / copy32_ms);
  }

  // ---- NF4Linear vs dense linear, forward + backward to the input ------------------------------
  qat::nn::Linear dense(k, n, false, opts);
  for (auto& p : dense.parameters()) p.set_requires_grad(false);  // frozen base, as in QLoRA
  const auto nf4 = qat::nf4::NF4Linear::from_linear(dense, qat::nf4::NF4Config{});
  const at::Tensor x = at::randn({m, k}, opts).requires_grad_(true);
  const at::Tensor gy = at::randn({m, n}, opts);
  auto step = [&](qat::nn::LinearBase& layer) {
    x.mutable_grad() = at::Tensor();
    layer.forward(x).backward(gy);
  };
  const double dense_ms = time_ms(dev, iters, [&] { step(dense); });
  const double nf4_ms = time_ms(dev, iters, [&] { step(*nf4); });
  std::printf(
      "{\"bench\":\"nf4_linear_fwd_bwd\",\"device\":\"%s\",\"m\":%lld,\"k\":%lld,\"n\":%lld,"
      "\"ms\":%.4f,\"dense_ms\":%.4f,\"ratio_to_dense\":%.3f,\"weight_bytes\":%lld,"
      "\"dense_weight_bytes\":%lld}\n",
      device.c_str(), (long long)m, (long long)k, (long long)n, nf4_ms, dense_ms, nf4_ms / dense_ms,
      (long long)nf4->weight().nbytes(), (long long)(n * k * 2));
  return 0;
}
