// The checkpoints of a run directory: what a checkpoint captures of the training state (model,
// optimizer, EMA, RNG, progress, config, classes), where the trainer writes it (last, best,
// epoch_NNNN) and how a resume puts it back.
#pragma once
#include <string>
#include <vector>

#include "config/config.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"
#include "train/train_models.h"

namespace prom::train {

class RunCheckpoints {
 public:
  // Everything is referenced, not copied: a checkpoint is the state at the time it is made.
  RunCheckpoints(const std::string& run_dir, const config::Config& config, TrainModels& models,
                 Optimizer& optimizer, const torch::Device& device, const std::vector<std::string>& classes);

  Checkpoint make(const TrainProgress& progress) const;
  void save_last(const TrainProgress& progress) const;
  // After epoch `progress.epoch`: last, best when `is_best`, and epoch_NNNN every run.save_every epochs.
  void save_epoch(const TrainProgress& progress, bool is_best) const;
  // Loads `path` into the models, the optimizer and the RNGs; returns its progress. `batches` is the
  // epoch length, which must be the one the checkpoint was written with.
  TrainProgress resume(const std::string& path, int64_t batches);

 private:
  std::string run_dir_;
  const config::Config& config_;
  TrainModels& models_;
  Optimizer& optimizer_;
  torch::Device device_;
  const std::vector<std::string>& classes_;
};

}  // namespace prom::train
