// Fused fake-quant forward/backward of a weight (per-group int4) as a fraction of the
// device-to-device copy bandwidth measured in the same run, and against the same fake quant
// written with plain libtorch ops. Prints one JSON line per figure.
//
//   bench_fake_quant [--rows R] [--cols C] [--iters N]
// Defaults: a Llama-3-8B MLP weight, 4096 x 14336, bf16. On a CPU the absolute times mean little;
// read the ratios.
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
#include "ops/quantize.h"

namespace {

using qat::scheme::Granularity;
using qat::scheme::QuantSpec;

using qat::bench::time_ms;

// The same fake quant with libtorch ops: what a user would write without our kernel.
at::Tensor torch_ops_fake_quant(const at::Tensor& w, int64_t g) {
  const at::Tensor x = w.to(at::kFloat).reshape({-1, g});
  at::Tensor s = x.abs().amax(1, true).div(7.0);
  s = at::where(s > 0, s, at::ones_like(s));
  return x.mul(s.reciprocal()).round().clamp(-8, 7).mul(s).to(w.scalar_type()).view(w.sizes());
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 4096, cols = 14336;
  int iters = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rows")) rows = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--cols")) cols = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
  }
  bool cuda = false;
#if defined(QAT_WITH_CUDA)
  cuda = at::cuda::is_available();
#endif
  const at::Device dev = cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  const std::string dev_name = cuda ? "cuda" : "cpu";
  const at::Tensor w =
      at::randn({rows, cols}, at::TensorOptions().dtype(at::kBFloat16).device(dev));
  const at::Tensor grad = at::randn_like(w);
  at::Tensor out = at::empty_like(w);
  const double elem = static_cast<double>(w.numel());

  const double copy_ms = time_ms(dev, iters, [&] { out.copy_(w); });
  const double copy_gbps = 2 * 2 * elem / (copy_ms * 1e6);  // read + write bf16
  std::printf(
      "{\"bench\":\"copy\",\"device\":\"%s\",\"shape\":[%lld,%lld],\"ms\":%.4f,\"gbps\":%.1f}\n",
      dev_name.c_str(), (long long)rows, (long long)cols, copy_ms, copy_gbps);

  for (int64_t g : {32, 128}) {
    const QuantSpec spec = QuantSpec::from_name("int4").with(Granularity::per_group(g));
    // Forward for the STE: y only (x read once, y written once; scales are 2/g bytes per element).
    const double fwd_ms =
        time_ms(dev, iters, [&] { qat::ops::fake_quantize_dynamic(w, spec, false); });
    const double fwd_bytes = 2 * 2 * elem + 8 * elem / g;
    // Forward for the clipped STE: also the mask (1 byte per element).
    const double fwdm_ms =
        time_ms(dev, iters, [&] { qat::ops::fake_quantize_dynamic(w, spec, true); });
    const double fwdm_bytes = fwd_bytes + elem;
    const at::Tensor mask = qat::ops::fake_quantize_dynamic(w, spec, true).mask;
    // Backward of the clipped STE: dX = dY * mask.
    const double bwd_ms = time_ms(dev, iters, [&] { at::mul_out(out, grad, mask); });
    const double bwd_bytes = 2 * 2 * elem + elem;
    const double torch_ms = time_ms(dev, iters, [&] { torch_ops_fake_quant(w, g); });
    // The two passes of the dynamic forward, timed apart: per-group statistics and scales, then
    // fake quant with those scales (what a calibrated observer's forward costs).
    const qat::ops::QParams qp = qat::ops::choose_qparams(w, spec);
    const double scales_ms = time_ms(dev, iters, [&] { qat::ops::choose_qparams(w, spec); });
    const double static_ms =
        time_ms(dev, iters, [&] { qat::ops::fake_quantize(w, spec, qp, false); });
    auto frac = [&](double bytes, double ms) { return bytes / (ms * 1e6) / copy_gbps; };
    std::printf(
        "{\"bench\":\"fake_quant_fwd\",\"device\":\"%s\",\"format\":\"int4\",\"group\":%lld,"
        "\"ms\":%.4f,\"gbps\":%.1f,\"copy_gbps\":%.1f,\"fraction_of_copy\":%.3f,"
        "\"torch_ops_ms\":%.4f,\"speedup_vs_torch_ops\":%.2f}\n",
        dev_name.c_str(), (long long)g, fwd_ms, fwd_bytes / (fwd_ms * 1e6), copy_gbps,
        frac(fwd_bytes, fwd_ms), torch_ms, torch_ms / fwd_ms);
    std::printf(
        "{\"bench\":\"fake_quant_fwd_parts\",\"device\":\"%s\",\"format\":\"int4\",\"group\":%lld,"
        "\"scales_ms\":%.4f,\"static_fake_quant_ms\":%.4f,\"static_fraction_of_copy\":%.3f}\n",
        dev_name.c_str(), (long long)g, scales_ms, static_ms, frac(fwd_bytes, static_ms));
    std::printf(
        "{\"bench\":\"fake_quant_fwd_mask\",\"device\":\"%s\",\"format\":\"int4\",\"group\":%lld,"
        "\"ms\":%.4f,\"fraction_of_copy\":%.3f}\n",
        dev_name.c_str(), (long long)g, fwdm_ms, frac(fwdm_bytes, fwdm_ms));
    std::printf(
        "{\"bench\":\"fake_quant_bwd_clipped\",\"device\":\"%s\",\"format\":\"int4\",\"group\":%"
        "lld,"
        "\"ms\":%.4f,\"fraction_of_copy\":%.3f}\n",
        dev_name.c_str(), (long long)g, bwd_ms, frac(bwd_bytes, bwd_ms));
  }
  // llama.cpp's k-quants: each 256-element super-block searches its sub-block scales (ggml's
  // quantize_row_q4_K_ref / q6_K_ref), so this is compute-bound, not a bandwidth figure; the ratio
  // to int4/g32 says what choosing Q4_K costs per training step's weight fake quant.
  const double int4_ms = time_ms(dev, iters, [&] {
    qat::ops::fake_quantize_dynamic(
        w, QuantSpec::from_name("int4").with(Granularity::per_group(32)), false);
  });
  for (const char* name : {"gguf_q4_k", "gguf_q5_k", "gguf_q6_k"}) {
    const QuantSpec spec = QuantSpec::from_name(name);
    const double ms = time_ms(dev, std::max(1, iters / 4),
                              [&] { qat::ops::fake_quantize_dynamic(w, spec, false); });
    std::printf(
        "{\"bench\":\"fake_quant_fwd\",\"device\":\"%s\",\"format\":\"%s\",\"group\":256,"
        "\"ms\":%.4f,\"fraction_of_copy\":%.3f,\"int4_g32_ms\":%.4f,\"vs_int4_g32\":%.2f}\n",
        dev_name.c_str(), name, ms, 2 * 2 * elem / (ms * 1e6) / copy_gbps, int4_ms, ms / int4_ms);
  }
  return 0;
}
