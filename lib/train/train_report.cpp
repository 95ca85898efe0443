#include "train/train_report.h"

#include <cstdio>

#include "config/config.h"

namespace prom::train {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string fixed4(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

std::string percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", v);
  return buf;
}

}  // namespace

void TrainReport::begin_epoch(int64_t epoch, int64_t batches, int64_t first_batch) {
  epoch_ = epoch;
  log_.begin_epoch(epoch, epochs_, batches, first_batch);
  epoch_start_ = window_start_ = Clock::now();
  wait_ = window_wait_ = 0;
  epoch_samples_ = window_samples_ = window_correct_ = 0;
}

void TrainReport::add_data_wait(double seconds) {
  wait_ += seconds;
  window_wait_ += seconds;
}

void TrainReport::add_steps(const MetricsRead& read) {
  for (const StepNumbers& s : read.steps) {
    epoch_samples_ += s.samples;
    window_samples_ += s.samples;
    window_correct_ += s.top1;
  }
  if (!read.steps.empty() && read.steps.back().samples > 0)
    last_loss_ = read.steps.back().loss_sum / static_cast<double>(read.steps.back().samples);
}

void TrainReport::step(const TrainProgress& progress, double lr, const nlohmann::json& extra) {
  const double window_seconds = seconds_since(window_start_);
  const double images_per_s = window_seconds > 0 ? static_cast<double>(window_samples_) / window_seconds : 0;
  log_.step(progress.iteration, progress.batches_done, last_loss_, lr, images_per_s);
  if (!log_step(progress.iteration)) return;
  nlohmann::json record = {
      {"kind", "step"}, {"epoch", epoch_ + 1}, {"batch", progress.batches_done},
      {"iteration", progress.iteration}, {"loss", last_loss_}, {"lr", lr},
      {"top1", 100.0 * static_cast<double>(window_correct_) / static_cast<double>(window_samples_)},
      {"images_per_s", images_per_s},
      {"data_wait", window_seconds > 0 ? window_wait_ / window_seconds : 0.0}};
  record.update(extra);
  log_.metrics(record);
  window_start_ = Clock::now();
  window_samples_ = window_correct_ = 0;
  window_wait_ = 0;
}

nlohmann::json TrainReport::epoch_record(int64_t epoch, const TrainProgress& p, double lr) const {
  const double train_seconds = seconds_since(epoch_start_);
  const double samples = static_cast<double>(p.samples);
  return {{"kind", "epoch"},
          {"epoch", epoch + 1},
          {"iteration", p.iteration},
          {"lr", lr},
          {"train_loss", p.samples > 0 ? p.loss_sum / samples : 0.0},
          {"train_top1", p.samples > 0 ? 100.0 * static_cast<double>(p.correct) / samples : 0.0},
          {"images_per_s", train_seconds > 0 ? static_cast<double>(epoch_samples_) / train_seconds : 0.0},
          {"data_wait", train_seconds > 0 ? wait_ / train_seconds : 0.0},
          {"train_seconds", train_seconds}};
}

std::string TrainReport::epoch_summary(const nlohmann::json& record, int64_t epochs) {
  return "epoch " + std::to_string(record["epoch"].get<int64_t>()) + "/" + std::to_string(epochs) +
         ": train loss " + fixed4(record["train_loss"].get<double>()) + ", top-1 " +
         percent(record["train_top1"].get<double>());
}

void TrainReport::add_eval(nlohmann::json& record, std::string& summary, const EpochEval& eval) {
  const EvalResult& r = eval.model;
  record["eval_loss"] = r.loss;
  record["eval_top1"] = r.top1;
  record["eval_top5"] = r.top5;
  record["eval_seconds"] = r.seconds;
  summary += " | eval loss " + fixed4(r.loss) + ", top-1 " + percent(r.top1) + ", top-5 " + percent(r.top5);
  if (eval.ema) {
    record["ema_eval_top1"] = eval.ema->top1;
    record["ema_eval_top5"] = eval.ema->top5;
    summary += " | EMA top-1 " + percent(eval.ema->top1);
  }
}

std::string TrainReport::speed_summary(const nlohmann::json& record) {
  char speed[96];
  std::snprintf(speed, sizeof speed, " | %.0f img/s, data wait %.0f%%, %s", record["images_per_s"].get<double>(),
                100.0 * record["data_wait"].get<double>(),
                format_duration(record["train_seconds"].get<double>()).c_str());
  return speed;
}

}  // namespace prom::train
