// The learning rate as a pure function of the iteration: linear warm-up, then constant, cosine,
// step or exponential decay. Being a function (not a stateful scheduler) makes resume exact: the
// checkpoint only records the iteration.
#pragma once
#include <cstdint>

#include "config/config.h"

namespace prom::train {

class LrSchedule {
 public:
  // `epochs` is train.epochs; `iters_per_epoch` the optimizer steps per epoch.
  LrSchedule(const config::ScheduleConfig& config, double base_lr, int64_t epochs, int64_t iters_per_epoch);

  // LR for the step that follows `iteration` completed steps (0-based).
  //   warm-up (iteration < W):  base * (f + (1 - f) * iteration / W), f = warmup_start_factor
  //   then t = (iteration - W) / iters_per_epoch epochs since the warm-up, T = epochs - warmup:
  //   constant:     base
  //   cosine:       min_lr + (base - min_lr) * (1 + cos(pi * t / T)) / 2   (per iteration)
  //   step:         base * gamma ^ floor(t / step_epochs)
  //   exponential:  base * gamma ^ floor(t)   (per epoch, as torchvision's ExponentialLR;
  //                 the V1 MobileNetV2 recipe is gamma 0.98)
  double lr(int64_t iteration) const;

  int64_t warmup_iters() const { return warmup_iters_; }

 private:
  config::ScheduleConfig config_;
  double base_lr_;
  int64_t epochs_, iters_per_epoch_, warmup_iters_;
};

}  // namespace prom::train
