#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "distributed/comm.h"
#include "io/atomic_file.h"
#include "prom/version.h"
#include "core/autocast.h"
#include "train/device.h"

namespace prom::train {
namespace fs = std::filesystem;

std::string last_checkpoint(const std::string& run_dir) { return run_dir + "/last.safetensors"; }
std::string best_checkpoint(const std::string& run_dir) { return run_dir + "/best.safetensors"; }
std::string epoch_checkpoint(const std::string& run_dir, int64_t epoch) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "/epoch_%04lld.safetensors", static_cast<long long>(epoch));
  return run_dir + buf;
}

int train(const config::Config& config, const TrainOptions& options, data::BatchSource& train_source,
          data::BatchSource* eval_source) {
  Trainer trainer(config, options, train_source, eval_source);
  return trainer.run();
}

Trainer::Trainer(const config::Config& config, const TrainOptions& options, data::BatchSource& train_source,
                 data::BatchSource* eval_source)
    : config_(config),
      options_(options),
      train_source_(train_source),
      eval_source_(eval_source),
      classes_(train_source.classes()),
      comm_(options.comm.get()),
      main_rank_(!options.comm || options.comm->is_main()),
      device_(torch::kCPU) {
  check_data();
  device_ = resolve_device(config_.run.device, options_.local_rank);
  if (parse_amp(config_.train.amp) == Amp::kFp16 && !device_.is_cuda())
    throw ConfigKeyError("train.amp: fp16 needs a CUDA device, but run.device resolves to " + device_.str() +
                         " (use bf16 on a CPU)");
  open_run_dir();
  if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  build();
  write_run_files();
}

Trainer::~Trainer() = default;

void Trainer::check_data() const {
  const auto& tc = config_.train;
  if (static_cast<int64_t>(classes_.size()) != config_.model.num_classes)
    throw ConfigKeyError("model.num_classes: " + std::to_string(config_.model.num_classes) +
                         " but the training data has " + std::to_string(classes_.size()) + " classes");
  if (eval_source_ != nullptr && eval_source_->classes() != classes_)
    throw Error("data: the evaluation data's class list differs from the training data's");
  if (train_source_.batches_per_epoch() < 1)
    throw ConfigKeyError("train.batch_size: " + std::to_string(tc.batch_size) + " leaves no full batch in an epoch of " +
                         std::to_string(train_source_.size()) + " samples");
}

// Rank 0 alone writes the run directory.
void Trainer::open_run_dir() {
  batches_ = train_source_.batches_per_epoch();
  const std::string& run_dir = options_.run_dir;
  if (main_rank_) {
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    if (ec) throw Error(at_path(run_dir, "cannot create the run directory: " + ec.message()));
    // A run killed while writing a checkpoint left its temporary file behind; nothing reads it.
    io::remove_stale_temporaries(run_dir);
  }
  log_ = std::make_unique<RunLog>(main_rank_ ? run_dir : "", main_rank_ && ::isatty(STDERR_FILENO) == 1,
                                  config_.run.log_every);
}

void Trainer::build() {
  torch::manual_seed(static_cast<uint64_t>(config_.run.seed));
  const bool resuming = !options_.resume_from.empty();
  models_ = build_train_models(config_, device_, resuming, classes_, comm_, *log_);
  optimizer_ = std::make_unique<Optimizer>(param_groups(*models_.net, config_.optim), config_.optim);
  schedule_ = std::make_unique<LrSchedule>(config_.schedule, config_.optim.lr, config_.train.epochs, batches_);
  checkpoints_ = std::make_unique<RunCheckpoints>(options_.run_dir, config_, models_, *optimizer_, device_, classes_);
  report_ = std::make_unique<TrainReport>(*log_, config_.run.log_every, config_.train.epochs);
  if (!resuming) return;
  ema_quantizers_synced_ = true;
  progress_ = checkpoints_->resume(options_.resume_from, batches_);
  log_->info("resumed from " + options_.resume_from + " at epoch " + std::to_string(progress_.epoch + 1) +
             ", batch " + std::to_string(progress_.batches_done) + " (iteration " +
             std::to_string(progress_.iteration) + ")");
}

// The run's files change only once every input has been checked: a resume that fails (another
// batch size, a damaged checkpoint) leaves config.yaml as it was, so the next --resume still works.
void Trainer::write_run_files() {
  if (main_rank_) {
    io::write_file_atomic(options_.run_dir + "/config.yaml", config::to_yaml(config_));
    if (config_.quant.enabled) io::write_file_atomic(options_.run_dir + "/quant_policy.txt", models_.policy_table);
  }
  log_->metrics({{"kind", "start"}, {"prom", PROM_VERSION}, {"device", device_.str()},
                 {"epoch", progress_.epoch}, {"iteration", progress_.iteration},
                 {"resumed", !options_.resume_from.empty()}});
  if (config_.train.amp != "off")
    log_->info("mixed precision: " + config_.train.amp + " autocast for the model's float compute" +
               (config_.train.amp == "fp16" ? ", dynamic loss scaling" : "") +
               (config_.quant.enabled ? "; fake quantizers in fp32" : ""));
  log_->info("training " + config_.model.arch + " on " + device_.str() + ": " + std::to_string(train_source_.size()) +
             " samples, " + std::to_string(batches_) + " iterations per epoch, " +
             std::to_string(config_.train.epochs) + " epochs; run directory " + options_.run_dir);
}

void Trainer::start_data_parallel() {
  if (comm_ == nullptr) return;
  std::vector<torch::Tensor> params;
  for (const auto& p : optimizer_->params()) params.push_back(p.param);
  reducer_ = std::make_unique<dist::GradReducer>(options_.comm, params,
                                                 static_cast<int64_t>(config_.dist.bucket_mb * 1024 * 1024),
                                                 config_.dist.overlap);
  log_->info("data-parallel: " + std::to_string(comm_->world_size()) + " ranks (" + comm_->backend() + "), " +
             std::to_string(reducer_->buckets()) + " gradient buckets, per-rank batch " +
             std::to_string(config_.train.batch_size / comm_->world_size()));
}

int Trainer::run() {
  stop_ = std::make_unique<StopSignal>();
  start_data_parallel();
  step_ = std::make_unique<TrainStep>(config_, models_, *optimizer_, device_, reducer_.get(), comm_);
  step_->load_scaler(progress_);  // a resumed fp16 run continues with its loss scale
  metrics_ = std::make_unique<StepMetrics>(device_, comm_, std::min<int64_t>(config_.run.log_every, batches_));
  for (int64_t epoch = progress_.epoch; epoch < config_.train.epochs; ++epoch)
    if (std::optional<int> code = train_epoch(epoch)) return *code;
  if (progress_.best_top1 >= 0) {
    char best[32];
    std::snprintf(best, sizeof best, "%.2f%%", progress_.best_top1);
    log_->info("done: best eval top-1 " + std::string(best) + " at epoch " + std::to_string(progress_.best_epoch) +
               " (" + best_checkpoint(options_.run_dir) + ")");
  } else {
    log_->info("done: " + last_checkpoint(options_.run_dir));
  }
  return kExitOk;
}

}  // namespace prom::train
