// The training loop, flat and readable like torchvision's classification reference: epochs of
// train + eval, checkpoints (last, best, every run.save_every epochs), graceful stop on signals,
// and an immediate stop on a non-finite loss.
#pragma once
#include <memory>
#include <string>

#include "config/config.h"
#include "data/batch_source.h"

namespace prom::dist {
class Comm;
}

namespace prom::train {

struct TrainOptions {
  std::string run_dir;      // receives config.yaml, train.log, metrics.jsonl and the checkpoints
  std::string resume_from;  // a checkpoint to continue from exactly; "" starts fresh
  // Data-parallel training (lib/distributed/comm.h): null for one process. The sources must then be this
  // rank's shards with batch_size / world_size samples per batch. Rank 0 alone writes run_dir.
  std::shared_ptr<dist::Comm> comm;
  int local_rank = 0;       // run.device auto/cuda means cuda:local_rank
};

// Trains config.model on `train_source`, evaluating on `eval_source` (may be null). Returns the
// process exit code: 0 when all epochs ran, 130/143 when SIGINT/SIGTERM stopped it after a
// resumable checkpoint. Throws prom::Error for a non-finite loss (the last good checkpoint stays)
// and prom::ConfigError for settings that cannot work together.
int train(const config::Config& config, const TrainOptions& options, data::BatchSource& train_source,
          data::BatchSource* eval_source);

// Checkpoint file names inside a run directory.
std::string last_checkpoint(const std::string& run_dir);   // RUN_DIR/last.safetensors
std::string best_checkpoint(const std::string& run_dir);   // RUN_DIR/best.safetensors
std::string epoch_checkpoint(const std::string& run_dir, int64_t epoch);  // RUN_DIR/epoch_0005.safetensors

}  // namespace prom::train
