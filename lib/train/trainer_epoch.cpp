// The Trainer's epochs: the step loop, the reads of the step metrics, the end-of-epoch evaluation
// and checkpoints, and the two ways out (a signal, a non-finite loss).
#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "distributed/comm.h"
#include "quant/policy.h"
#include "train/trainer.h"

namespace prom::train {
namespace fs = std::filesystem;

void Trainer::start_epoch(int64_t epoch) {
  train_source_.start_epoch(epoch);
  for (int64_t i = 0; i < progress_.batches_done; ++i)  // mid-epoch resume: the batches already seen
    if (!train_source_.next())
      throw Error(at_path(options_.resume_from, "the epoch has fewer batches than the checkpoint has trained on"));
  auto& net = *models_.net;
  net.train();
  if (config_.train.freeze_bn)
    for (auto& m : net.modules(false))
      if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) bn->eval();
  if (config_.quant.enabled) quant::on_epoch_start(net, config_.quant, static_cast<int>(epoch));
  report_->begin_epoch(epoch, batches_, progress_.batches_done);
}

std::optional<data::Batch> Trainer::next_batch() {
  const auto wait_start = std::chrono::steady_clock::now();
  std::optional<data::Batch> batch = train_source_.next();
  report_->add_data_wait(std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count());
  return batch;
}

std::optional<int> Trainer::train_epoch(int64_t epoch) {
  start_epoch(epoch);
  while (std::optional<data::Batch> batch = next_batch()) {
    const double lr = schedule_->lr(progress_.iteration);
    StepForward forward = step_->forward(*batch, progress_.iteration);
    metrics_->add(forward, progress_.iteration + 1);
    step_->update(forward, lr);
    step_->save_scaler(progress_);
    ++progress_.iteration;
    ++progress_.batches_done;
    if (models_.ema) update_ema();
    const bool stop_now = after_step(lr);
    if (config_.train.test_hooks.step_sleep_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(config_.train.test_hooks.step_sleep_ms));
    if (stop_now) {
      report_->end_epoch();
      return stopped("in epoch " + std::to_string(epoch + 1) + " after batch " + std::to_string(progress_.batches_done));
    }
  }
  report_->end_epoch();
  if (metrics_->queued() > 0) read_metrics(false, nullptr);  // every step is counted before the checkpoint
  return end_epoch(epoch);
}

// Reads the step metrics when they are due -- every run.log_every iterations, and before a stop --
// and reports the step. True when the run must stop: one process polls its signal flag after every
// step; data-parallel ranks agree on it at the reads (each one an all-reduce).
bool Trainer::after_step(double lr) {
  const bool log_now = report_->log_step(progress_.iteration);
  const bool signalled = stop_->received() != 0;
  bool stop = false;
  if (log_now || (signalled && comm_ == nullptr) || metrics_->full()) read_metrics(signalled, &stop);
  if (comm_ == nullptr) stop = signalled;
  report_->step(progress_, lr, log_now ? step_extras() : nlohmann::json::object());
  return stop;
}

// The EMA shadow copies the fake quantizers' state once the first step has initialised it (see
// ema.h), copies the whole model before train.ema.start_epoch, then follows it every
// train.ema.every iterations.
void Trainer::update_ema() {
  if (!ema_quantizers_synced_) {
    models_.ema->sync_quantizers(*models_.net);
    ema_quantizers_synced_ = true;
  }
  if (progress_.epoch < config_.train.ema.start_epoch) models_.ema->reset(*models_.net);
  else if (progress_.iteration % config_.train.ema.every == 0) models_.ema->update(*models_.net);
}

// Reads the queued step numbers into the progress and the report; a non-finite loss ends the run.
void Trainer::read_metrics(bool stop_requested, bool* stop) {
  MetricsRead read = metrics_->read(stop_requested);
  if (read.bad_iteration != 0) fail_non_finite(read);
  for (const StepNumbers& s : read.steps) {
    progress_.loss_sum += s.loss_sum;
    progress_.samples += s.samples;
    progress_.correct += s.top1;
  }
  report_->add_steps(read);
  if (stop != nullptr) *stop = read.stop;
}

void Trainer::fail_non_finite(const MetricsRead& read) {
  const int64_t iteration = read.bad_iteration;
  const int64_t epoch = (iteration - 1) / batches_ + 1;
  const std::string what = read.bad_is_nan ? "NaN" : "Inf";
  const std::string run_dir = options_.run_dir;
  std::string kept = fs::exists(last_checkpoint(run_dir)) ? "the last good checkpoint is " + last_checkpoint(run_dir)
                                                          : "no checkpoint was written yet";
  log_->metrics({{"kind", "error"}, {"epoch", epoch}, {"iteration", iteration}, {"loss", read.bad_is_nan ? "nan" : "inf"}});
  std::string msg = "iteration " + std::to_string(iteration) + " (epoch " + std::to_string(epoch) + "): the loss is " +
                    what + " (lr " + config::format_number(schedule_->lr(iteration - 1)) + "); stopped, " + kept;
  log_->error(msg);
  throw Error(msg);
}

// Step-record fields beyond the loss: the all-reduce wait, and every rank's parameter checksum.
nlohmann::json Trainer::step_extras() {
  nlohmann::json extra = nlohmann::json::object();
  if (reducer_) extra["allreduce_wait_s"] = reducer_->last_wait_seconds();
  if (config_.train.test_hooks.param_checksum) {  // every rank's model, bit for bit
    const int64_t mine = dist::module_checksum(*models_.net);
    extra["param_checksums"] = comm_ != nullptr ? comm_->all_gather(mine) : std::vector<int64_t>{mine};
  }
  return extra;
}

std::optional<int> Trainer::end_epoch(int64_t epoch) {
  nlohmann::json record = report_->epoch_record(epoch, progress_, optimizer_->lr());
  progress_.epoch = epoch + 1;
  progress_.batches_done = 0;
  progress_.loss_sum = 0;
  progress_.samples = progress_.correct = 0;
  std::string summary = TrainReport::epoch_summary(record, config_.train.epochs);
  bool is_best = false;
  const int64_t every = config_.train.eval_every;
  if (eval_source_ != nullptr && ((epoch + 1) % every == 0 || epoch + 1 == config_.train.epochs)) {
    EpochEval eval = evaluate_epoch(models_, *eval_source_, config_, device_, comm_);
    TrainReport::add_eval(record, summary, eval);
    if (eval.model.top1 > progress_.best_top1) {
      progress_.best_top1 = eval.model.top1;
      progress_.best_epoch = epoch + 1;
      is_best = true;
    }
  }
  log_->info(summary + TrainReport::speed_summary(record));
  log_->metrics(record);
  if (main_rank_) checkpoints_->save_epoch(progress_, is_best);
  bool stop_now = stop_->received() != 0;
  if (comm_ != nullptr) stop_now = comm_->sum({stop_now ? 1.0 : 0.0})[0] > 0;
  if (stop_now) return stopped("after epoch " + std::to_string(epoch + 1));
  return std::nullopt;
}

int Trainer::stopped(const std::string& where) {
  int sig = stop_->received();
  if (sig == 0) sig = SIGTERM;  // another rank was signalled
  if (main_rank_) checkpoints_->save_last(progress_);
  const std::string last = last_checkpoint(options_.run_dir);
  log_->info(std::string(sig == SIGINT ? "SIGINT" : "SIGTERM") + " received " + where + ": saved " + last +
             "; continue with prom-train --resume " + options_.run_dir);
  log_->metrics({{"kind", "stop"}, {"signal", sig}, {"epoch", progress_.epoch},
                 {"batches_done", progress_.batches_done}, {"iteration", progress_.iteration}});
  return sig == SIGINT ? kExitSigint : kExitSigterm;
}

}  // namespace prom::train
