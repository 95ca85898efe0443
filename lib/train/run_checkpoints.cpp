#include "train/run_checkpoints.h"

#include "core/error.h"
#include "model/weights.h"
#include "prom/version.h"
#include "train/trainer.h"

namespace prom::train {

RunCheckpoints::RunCheckpoints(const std::string& run_dir, const config::Config& config, TrainModels& models,
                               Optimizer& optimizer, const torch::Device& device,
                               const std::vector<std::string>& classes)
    : run_dir_(run_dir), config_(config), models_(models), optimizer_(optimizer), device_(device), classes_(classes) {}

Checkpoint RunCheckpoints::make(const TrainProgress& progress) const {
  Checkpoint c;
  c.model = model::state_dict(*models_.net);
  c.optim = optimizer_.state_tensors();
  if (models_.ema) c.ema = model::state_dict(models_.ema->shadow());
  capture_rng(c, device_);
  c.progress = progress;
  c.progress.optimizer_steps = optimizer_.steps();
  config::Config config = config_;  // to_yaml visits (a non-const walk)
  c.config_yaml = config::to_yaml(config);
  c.classes = classes_;
  c.prom_version = PROM_VERSION;
  return c;
}

void RunCheckpoints::save_last(const TrainProgress& progress) const {
  save_checkpoint(last_checkpoint(run_dir_), make(progress));
}

void RunCheckpoints::save_epoch(const TrainProgress& progress, bool is_best) const {
  Checkpoint c = make(progress);
  save_checkpoint(last_checkpoint(run_dir_), c);
  if (is_best) save_checkpoint(best_checkpoint(run_dir_), c);
  if (config_.run.save_every > 0 && progress.epoch % config_.run.save_every == 0)
    save_checkpoint(epoch_checkpoint(run_dir_, progress.epoch), c);
}

TrainProgress RunCheckpoints::resume(const std::string& path, int64_t batches) {
  Checkpoint c = load_checkpoint(path);
  check_classes(c.classes, classes_, path);
  model::load_state_dict(*models_.net, c.model, path);
  optimizer_.load_state(c.optim, c.progress.optimizer_steps, path);
  if (models_.ema) {
    if (c.ema.empty()) throw Error(at_path(path, "has no EMA weights but train.ema.enabled is true"));
    model::load_state_dict(models_.ema->shadow(), c.ema, path);
  }
  restore_rng(c, device_, path);
  const TrainProgress& p = c.progress;
  if (p.iteration != p.epoch * batches + p.batches_done)
    throw ConfigError(at_path(path, "was written with " + std::to_string(p.iteration) + " iterations at epoch " +
                                        std::to_string(p.epoch) + "; the data or train.batch_size changed since"));
  return p;
}

}  // namespace prom::train
