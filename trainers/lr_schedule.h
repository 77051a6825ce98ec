// Learning-rate schedules: linear warmup from 0, then cosine or linear decay to min_lr_ratio * lr,
// or constant. A pure function of the step, so resuming needs no scheduler state beyond the step.
#pragma once

#include <cstdint>
#include <string>

namespace qat::train {

enum class Schedule { kCosine, kLinear, kConstant };
Schedule schedule_from_name(const std::string& name);  // "cosine", "linear", "constant"
std::string to_string(Schedule s);

struct LrSchedule {
  double lr = 1e-4;  // peak
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr_ratio = 0.1;  // final lr = min_lr_ratio * lr (cosine and linear)
  Schedule kind = Schedule::kCosine;

  // The rate for optimizer step `step` (0-based): warmup gives lr*(step+1)/warmup_steps.
  double at(int64_t step) const;
  void validate() const;
};

}  // namespace qat::train
