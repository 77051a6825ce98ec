// bf16 autocast for the training and evaluation forward: matmuls (and the ops autocast lists) run
// in bf16 while parameters stay float32 master weights. On CUDA wherever `train.autocast` is not
// off. On the CPU only when asked (`train.autocast: bf16`) and only where the CPU multiplies bf16
// natively (AVX512_BF16 or AMX-BF16): without those libtorch's bf16 matmul is slower than its
// float32 one, so the run stays in float32 and says why.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <string>

#include "trainers/trainer_config.h"

namespace qat::train {

// Whether this CPU has bf16 matmul instructions (libtorch's own CPU detection).
bool cpu_has_bf16_matmul();

// The precision of a run's forward: whether bf16 autocast is on, and a line saying why.
struct Precision {
  bool bf16 = false;
  std::string reason;
};
// `cpu_bf16` is what the CPU offers (cpu_has_bf16_matmul() in a run; a parameter for tests).
Precision resolve_precision(Device device, Autocast autocast, bool cpu_bf16);
Precision resolve_precision(const TrainSection& train);

// bf16 autocast for `device_type` while alive (thread-local state, restored on exit); nothing
// when `on` is false.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device_type, bool on);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_type_;
  bool on_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

}  // namespace qat::train
