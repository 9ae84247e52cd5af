#pragma once
// Learning-rate schedules, stepped per iteration (optimizer step), as InsightFace does.
//   poly:             linear warm-up 0 -> lr over warmup steps, then lr * (1 - t)^power, t the
//                     fraction of the post-warm-up steps done (arcface_torch's PolyScheduler).
//   cosine:           linear warm-up, then min_lr + (lr - min_lr) * (1 + cos(pi t)) / 2.
//   cosine_restarts:  linear warm-up, then SGDR: cosine over periods T0, T0*mult, ... each
//                     restarting at lr (PyTorch's CosineAnnealingWarmRestarts).
//   constant:         linear warm-up, then lr.
#include <cstdint>

#include "train/train/config.hpp"

namespace arcforge::train {

class LrSchedule {
 public:
  LrSchedule(const ScheduleConfig& config, double base_lr, int64_t total_steps);
  // Learning rate for optimizer step `step` (0-based).
  double at(int64_t step) const;

 private:
  ScheduleConfig config_;
  double base_lr_;
  int64_t total_steps_;
};

}  // namespace arcforge::train
