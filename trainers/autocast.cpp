#include "trainers/autocast.h"

#include <ATen/autocast_mode.h>
#include <ATen/cpu/Utils.h>

namespace qat::train {

bool cpu_has_bf16_matmul() {
  static const bool has = [] {
    const auto caps = at::cpu::get_cpu_capabilities();
    auto flag = [&](const char* key) {
      const auto it = caps.find(key);
      return it != caps.end() && it->second.isBool() && it->second.toBool();
    };
    return flag("avx512_bf16") || flag("amx_bf16");
  }();
  return has;
}

Precision resolve_precision(Device device, Autocast autocast, bool cpu_bf16) {
  if (autocast == Autocast::kOff) return {false, "float32 (train.autocast: off)"};
  if (device == Device::kCuda) return {true, "bf16 autocast, float32 master weights"};
  if (autocast == Autocast::kAuto)
    return {false, "float32 (on the CPU bf16 autocast is opt-in: train.autocast=bf16)"};
  if (cpu_bf16) return {true, "bf16 autocast (CPU with bf16 instructions), float32 master weights"};
  return {false,
          "float32: train.autocast=bf16 asked, but this CPU has no bf16 matmul instructions "
          "(AVX512_BF16 or AMX-BF16), where libtorch's bf16 matmul is slower than float32"};
}

Precision resolve_precision(const TrainSection& train) {
  return resolve_precision(train.device, train.autocast,
                           train.device == Device::kCpu && cpu_has_bf16_matmul());
}

bool TrainSection::bf16() const {
  return resolve_precision(*this).bf16;
}

AutocastGuard::AutocastGuard(c10::DeviceType device_type, bool on)
    : device_type_(device_type), on_(on) {
  if (!on_) return;
  prev_enabled_ = at::autocast::is_autocast_enabled(device_type_);
  prev_dtype_ = at::autocast::get_autocast_dtype(device_type_);
  at::autocast::set_autocast_enabled(device_type_, true);
  at::autocast::set_autocast_dtype(device_type_, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!on_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_type_, prev_enabled_);
  at::autocast::set_autocast_dtype(device_type_, prev_dtype_);
}

}  // namespace qat::train
