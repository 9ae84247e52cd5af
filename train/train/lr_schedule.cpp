#include "train/train/lr_schedule.hpp"

#include <algorithm>
#include <cmath>

namespace arcforge::train {

LrSchedule::LrSchedule(const ScheduleConfig& config, double base_lr, int64_t total_steps)
    : config_(config), base_lr_(base_lr), total_steps_(total_steps) {}

double LrSchedule::at(int64_t step) const {
  const int64_t warmup = config_.warmup_steps;
  // arcface_torch's warm-up: lr * step / warmup, so step 0 runs at lr 0.
  if (step < warmup) return base_lr_ * static_cast<double>(step) / static_cast<double>(warmup);
  const double after = static_cast<double>(step - warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps_ - warmup));
  const double t = std::clamp(after / span, 0.0, 1.0);
  const double pi = 3.14159265358979323846;
  if (config_.name == "poly") return base_lr_ * std::pow(1.0 - t, config_.power);
  if (config_.name == "cosine")
    return config_.min_lr + (base_lr_ - config_.min_lr) * (1.0 + std::cos(pi * t)) / 2.0;
  if (config_.name == "cosine_restarts") {
    double period = config_.restart_period > 0 ? static_cast<double>(config_.restart_period)
                                               : std::max(1.0, span / 4.0);
    double position = after;
    while (position >= period) {
      position -= period;
      period *= config_.restart_mult;
    }
    return config_.min_lr + (base_lr_ - config_.min_lr) * (1.0 + std::cos(pi * position / period)) / 2.0;
  }
  return base_lr_;  // constant
}

}  // namespace arcforge::train
