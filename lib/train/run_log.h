// What a run tells the user and leaves in its directory: a progress bar with ETA, loss, LR and
// images/s when stderr is a terminal (plain lines every run.log_every iterations otherwise), log
// lines to the console and RUN_DIR/train.log, and metrics as JSON lines in RUN_DIR/metrics.jsonl.
#pragma once
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace prom::train {

class RunLog {
 public:
  // interactive: draw a progress bar (stderr is a terminal). An empty run_dir logs only warnings
  // to the console and writes no files (data-parallel ranks other than 0).
  RunLog(const std::string& run_dir, bool interactive, int log_every);
  ~RunLog();

  // Console and train.log.
  void info(const std::string& line);
  void error(const std::string& line);
  // Appends one JSON object to metrics.jsonl (flushed: a crash loses nothing written before).
  void metrics(const nlohmann::json& record);

  void begin_epoch(int64_t epoch, int64_t epochs, int64_t batches, int64_t first_batch);
  // After batch `batch` (1-based) of the epoch; draws the bar or, every log_every iterations, a line.
  void step(int64_t iteration, int64_t batch, double loss, double lr, double images_per_s);
  void end_epoch();

  bool interactive() const { return interactive_; }

 private:
  void clear_bar();

  std::shared_ptr<spdlog::logger> console_and_file_, file_only_;
  std::ofstream metrics_;
  bool interactive_;
  int log_every_;
  int64_t epoch_ = 0, epochs_ = 0, batches_ = 0, first_batch_ = 0;
  std::chrono::steady_clock::time_point epoch_start_, last_draw_;
  bool bar_visible_ = false;
};

// "1:02:03" or "2:03".
std::string format_duration(double seconds);

}  // namespace prom::train
