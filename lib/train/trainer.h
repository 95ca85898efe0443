// The training loop, in parts that each do one job, like torchvision's classification reference:
//   train_models   the network, its EMA shadow and the distillation teacher
//   train_step     forward, loss, backward, all-reduce, clipping, update
//   step_metrics   the steps' loss and accuracy, queued on the device and read every log_every steps
//   epoch_eval     evaluation after an epoch (model and EMA)
//   run_checkpoints  last, best and epoch_NNNN checkpoints, and resume
//   train_report   progress bar, log lines and metrics.jsonl records
// The Trainer below runs epochs of train + eval, writes the checkpoints, stops gracefully on
// signals and at once on a non-finite loss.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "train/run_checkpoints.h"
#include "train/schedule.h"
#include "train/step_metrics.h"
#include "train/stop_signal.h"
#include "train/train_report.h"
#include "train/train_step.h"  // with the config, data, model, optimizer and dist declarations

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

class Trainer {
 public:
  // Checks the inputs, prepares the run directory, builds the models and resumes when asked.
  Trainer(const config::Config& config, const TrainOptions& options, data::BatchSource& train_source,
          data::BatchSource* eval_source);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // The remaining epochs; the exit code of train().
  int run();

 private:
  void check_data() const;
  void open_run_dir();
  void build();
  void write_run_files();
  void start_data_parallel();
  std::optional<int> train_epoch(int64_t epoch);
  void start_epoch(int64_t epoch);
  std::optional<data::Batch> next_batch();
  bool after_step(double lr);
  void update_ema();
  void read_metrics(bool stop_requested, bool* stop);
  [[noreturn]] void fail_non_finite(const MetricsRead& read);
  nlohmann::json step_extras();
  std::optional<int> end_epoch(int64_t epoch);
  int stopped(const std::string& where);

  config::Config config_;
  TrainOptions options_;
  data::BatchSource& train_source_;
  data::BatchSource* eval_source_;
  std::vector<std::string> classes_;
  int64_t batches_ = 0;
  dist::Comm* comm_ = nullptr;
  bool main_rank_ = true;
  torch::Device device_;
  std::unique_ptr<RunLog> log_;
  TrainModels models_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  std::unique_ptr<RunCheckpoints> checkpoints_;
  std::unique_ptr<dist::GradReducer> reducer_;
  std::unique_ptr<TrainStep> step_;
  std::unique_ptr<StepMetrics> metrics_;
  std::unique_ptr<TrainReport> report_;
  TrainProgress progress_;
  bool ema_quantizers_synced_ = false;  // a resumed shadow has them from its checkpoint
  std::unique_ptr<StopSignal> stop_;  // installed when training starts, as before it a signal ends the process
};

// Checkpoint file names inside a run directory.
std::string last_checkpoint(const std::string& run_dir);   // RUN_DIR/last.safetensors
std::string best_checkpoint(const std::string& run_dir);   // RUN_DIR/best.safetensors
std::string epoch_checkpoint(const std::string& run_dir, int64_t epoch);  // RUN_DIR/epoch_0005.safetensors

}  // namespace prom::train
