#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace prom::train {

LrSchedule::LrSchedule(const config::ScheduleConfig& config, double base_lr, int64_t epochs,
                       int64_t iters_per_epoch)
    : config_(config), base_lr_(base_lr), epochs_(epochs), iters_per_epoch_(std::max<int64_t>(1, iters_per_epoch)) {
  warmup_iters_ = static_cast<int64_t>(std::llround(config.warmup_epochs * static_cast<double>(iters_per_epoch_)));
  if (config.warmup_epochs > static_cast<double>(epochs))
    throw ConfigKeyError("schedule.warmup_epochs: " + config::format_number(config.warmup_epochs) +
                         " exceeds train.epochs (" + std::to_string(epochs) + ")");
}

double LrSchedule::lr(int64_t iteration) const {
  if (iteration < warmup_iters_) {
    const double f = config_.warmup_start_factor;
    return base_lr_ * (f + (1.0 - f) * static_cast<double>(iteration) / static_cast<double>(warmup_iters_));
  }
  const double t = static_cast<double>(iteration - warmup_iters_) / static_cast<double>(iters_per_epoch_);
  const std::string& name = config_.name;
  if (name == "constant") return base_lr_;
  if (name == "cosine") {
    const double total = static_cast<double>(epochs_ * iters_per_epoch_ - warmup_iters_) / iters_per_epoch_;
    const double progress = total > 0 ? std::min(1.0, t / total) : 1.0;
    return config_.min_lr + (base_lr_ - config_.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  if (name == "step") return base_lr_ * std::pow(config_.gamma, std::floor(t / config_.step_epochs));
  if (name == "exponential") return base_lr_ * std::pow(config_.gamma, std::floor(t));
  throw ConfigKeyError("schedule.name: unknown schedule '" + name + "'");
}

}  // namespace prom::train
