// Timing for the benchmarks: synchronise the device, warm up, then the mean over `iters` calls.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <functional>

#if defined(QAT_WITH_CUDA)
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace qat::bench {

inline void sync(const at::Device& d) {
#if defined(QAT_WITH_CUDA)
  if (d.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)d;
#endif
}

// Milliseconds per call: `warmup` untimed calls, then the mean over `iters` timed ones.
inline double time_ms(const at::Device& d, int iters, const std::function<void()>& fn,
                      int warmup = 3) {
  for (int i = 0; i < warmup; ++i) fn();
  sync(d);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  sync(d);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
         iters;
}

}  // namespace qat::bench
