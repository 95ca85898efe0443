// What the trainer reports: the progress bar or log line per step, a "step" record in
// metrics.jsonl every run.log_every iterations (loss, LR, top-1 of the window, images/s, data wait)
// and the "epoch" record and summary line (train loss and top-1, evaluation, throughput).
#pragma once
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "train/checkpoint.h"
#include "train/epoch_eval.h"
#include "train/run_log.h"
#include "train/step_metrics.h"

namespace prom::train {

class TrainReport {
 public:
  TrainReport(RunLog& log, int log_every, int64_t epochs) : log_(log), log_every_(log_every), epochs_(epochs) {}

  void begin_epoch(int64_t epoch, int64_t batches, int64_t first_batch);
  void add_data_wait(double seconds);
  // The steps of a metrics read: window and epoch counters, the loss of the latest step.
  void add_steps(const MetricsRead& read);
  // After each step: the progress bar, and every log_every iterations the step line and record
  // (`extra` adds fields to it: all-reduce wait, checksums).
  void step(const TrainProgress& progress, double lr, const nlohmann::json& extra);
  bool log_step(int64_t iteration) const { return iteration % log_every_ == 0; }
  void end_epoch() { log_.end_epoch(); }

  // The epoch's record from the running sums in `progress` (before they are reset).
  nlohmann::json epoch_record(int64_t epoch, const TrainProgress& progress, double lr) const;
  // Adds the evaluation to the record and the summary line.
  static void add_eval(nlohmann::json& record, std::string& summary, const EpochEval& eval);
  static std::string epoch_summary(const nlohmann::json& record, int64_t epochs);
  static std::string speed_summary(const nlohmann::json& record);

 private:
  using Clock = std::chrono::steady_clock;
  RunLog& log_;
  int log_every_;
  int64_t epochs_;
  int64_t epoch_ = 0;
  Clock::time_point epoch_start_, window_start_;
  double wait_ = 0, window_wait_ = 0;
  int64_t epoch_samples_ = 0, window_samples_ = 0, window_correct_ = 0;
  double last_loss_ = 0;
};

}  // namespace prom::train
