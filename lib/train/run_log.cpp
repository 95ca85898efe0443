#include "train/run_log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cmath>
#include <cstdio>
#include <iostream>

#include "core/error.h"

namespace prom::train {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

RunLog::RunLog(const std::string& run_dir, bool interactive, int log_every)
    : interactive_(interactive), log_every_(log_every) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  if (run_dir.empty()) {  // a data-parallel rank other than 0: warnings on the console, nothing on disk
    console_and_file_ = std::make_shared<spdlog::logger>("prom-train", console);
    console_and_file_->set_level(spdlog::level::warn);
    file_only_ = std::make_shared<spdlog::logger>("prom-train", console);
    file_only_->set_level(spdlog::level::off);
    interactive_ = false;
    return;
  }
  std::shared_ptr<spdlog::sinks::basic_file_sink_mt> file;
  try {
    file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(run_dir + "/train.log", /*truncate=*/false);
  } catch (const spdlog::spdlog_ex& e) {
    throw Error(at_path(run_dir + "/train.log", std::string("cannot open: ") + e.what()));
  }
  console_and_file_ = std::make_shared<spdlog::logger>("prom-train", spdlog::sinks_init_list{console, file});
  file_only_ = std::make_shared<spdlog::logger>("prom-train", file);
  for (auto* l : {&console_and_file_, &file_only_}) {
    (*l)->set_pattern("[%Y-%m-%d %H:%M:%S] %v");
    (*l)->flush_on(spdlog::level::info);
  }
  metrics_.open(run_dir + "/metrics.jsonl", std::ios::app);
  if (!metrics_) throw Error(at_path(run_dir + "/metrics.jsonl", "cannot open for writing"));
}

RunLog::~RunLog() { clear_bar(); }

void RunLog::clear_bar() {
  if (!bar_visible_) return;
  std::cerr << "\r\033[K" << std::flush;
  bar_visible_ = false;
}

void RunLog::info(const std::string& line) {
  clear_bar();
  console_and_file_->info(line);
}

void RunLog::error(const std::string& line) {
  clear_bar();
  file_only_->error(line);  // the console gets it as the one-line error of lib/app
}

void RunLog::metrics(const nlohmann::json& record) {
  if (!metrics_.is_open()) return;
  metrics_ << record.dump() << "\n";
  metrics_.flush();
}

void RunLog::begin_epoch(int64_t epoch, int64_t epochs, int64_t batches, int64_t first_batch) {
  epoch_ = epoch;
  epochs_ = epochs;
  batches_ = batches;
  first_batch_ = first_batch;
  epoch_start_ = std::chrono::steady_clock::now();
  last_draw_ = epoch_start_ - std::chrono::seconds(1);
}

void RunLog::step(int64_t iteration, int64_t batch, double loss, double lr, double images_per_s) {
  auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - epoch_start_).count();
  const int64_t done = batch - first_batch_;
  const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(batches_ - batch) : 0;
  char stats[160];
  std::snprintf(stats, sizeof stats, "loss %.4f  lr %.3g  %.0f img/s  ETA %s", loss, lr, images_per_s,
                format_duration(eta).c_str());
  if (interactive_) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && batch < batches_) return;
    last_draw_ = now;
    constexpr int kWidth = 24;
    const int filled = batches_ > 0 ? static_cast<int>(kWidth * batch / batches_) : kWidth;
    std::string bar(filled, '=');
    bar.resize(kWidth, ' ');
    std::cerr << "\r\033[Kepoch " << epoch_ + 1 << "/" << epochs_ << " [" << bar << "] " << batch << "/" << batches_
              << "  " << stats << std::flush;
    bar_visible_ = true;
    if (iteration % log_every_ == 0) file_only_->info("epoch {}/{} {}/{}  {}", epoch_ + 1, epochs_, batch, batches_, stats);
  } else if (iteration % log_every_ == 0) {
    console_and_file_->info("epoch {}/{} {}/{}  {}", epoch_ + 1, epochs_, batch, batches_, stats);
  }
}

void RunLog::end_epoch() { clear_bar(); }

}  // namespace prom::train
