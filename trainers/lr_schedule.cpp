#include "trainers/lr_schedule.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace qat::train {

Schedule schedule_from_name(const std::string& name) {
  if (name == "cosine") return Schedule::kCosine;
  if (name == "linear") return Schedule::kLinear;
  if (name == "constant") return Schedule::kConstant;
  TORCH_CHECK(false, "unknown schedule '", name, "': use cosine, linear or constant");
  return Schedule::kCosine;
}

std::string to_string(Schedule s) {
  switch (s) {
    case Schedule::kCosine:
      return "cosine";
    case Schedule::kLinear:
      return "linear";
    case Schedule::kConstant:
      return "constant";
  }
  return "?";
}

void LrSchedule::validate() const {
  TORCH_CHECK(lr > 0 && std::isfinite(lr), "train.lr must be a positive number, got ", lr);
  TORCH_CHECK(total_steps >= 1, "train.steps must be >= 1, got ", total_steps);
  TORCH_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps,
              "train.warmup_steps must be in [0, ", "train.steps=", total_steps, "], got ",
              warmup_steps);
  TORCH_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, "train.min_lr_ratio must be in [0, 1], got ",
              min_lr_ratio);
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps)
    return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == Schedule::kConstant) return lr;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  const double t =
      std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
  const double min_lr = lr * min_lr_ratio;
  if (kind == Schedule::kLinear) return lr + (min_lr - lr) * t;
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * t));
}

}  // namespace qat::train
