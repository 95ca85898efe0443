#include "train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <thread>

#include "core/error.h"
#include "distributed/comm.h"
#include "io/atomic_file.h"
#include "model/registry.h"
#include "quant/policy.h"
#include "model/weights.h"
#include "prom/version.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/ema.h"
#include "train/evaluate.h"
#include "train/loss.h"
#include "train/optimizer.h"
#include "train/run_log.h"
#include "train/schedule.h"
#include "train/stop_signal.h"

namespace prom::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string last_checkpoint(const std::string& run_dir) { return run_dir + "/last.safetensors"; }
std::string best_checkpoint(const std::string& run_dir) { return run_dir + "/best.safetensors"; }
std::string epoch_checkpoint(const std::string& run_dir, int64_t epoch) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "/epoch_%04lld.safetensors", static_cast<long long>(epoch));
  return run_dir + buf;
}

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

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

// A model with the config's architecture, on `device`, in the config's memory format.
std::shared_ptr<model::ClassifierModel> build_model(const config::ModelConfig& c, const torch::Device& device) {
  auto m = model::create_model(c);
  m->to(device);
  if (c.channels_last) model::to_channels_last(*m);
  return m;
}

}  // namespace

int train(const config::Config& config_in, const TrainOptions& options, data::BatchSource& train_source,
          data::BatchSource* eval_source) {
  config::Config config = config_in;
  const auto& tc = config.train;
  const std::string& run_dir = options.run_dir;
  const std::vector<std::string>& classes = train_source.classes();
  if (static_cast<int64_t>(classes.size()) != config.model.num_classes)
    throw ConfigKeyError("model.num_classes: " + std::to_string(config.model.num_classes) +
                         " but the training data has " + std::to_string(classes.size()) + " classes");
  if (eval_source != nullptr && eval_source->classes() != classes)
    throw Error("data: the evaluation data's class list differs from the training data's");
  const int64_t batches = train_source.batches_per_epoch();
  if (batches < 1)
    throw ConfigKeyError("train.batch_size: " + std::to_string(tc.batch_size) + " leaves no full batch in an epoch of " +
                         std::to_string(train_source.size()) + " samples");

  // Data-parallel (lib/distributed): every rank trains; rank 0 alone writes the run directory.
  const std::shared_ptr<dist::Comm>& comm = options.comm;
  const bool main_rank = !comm || comm->is_main();
  if (main_rank) {
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    if (ec) throw Error(at_path(run_dir, "cannot create the run directory: " + ec.message()));
    // A run killed while writing a checkpoint left its temporary file behind; nothing reads it.
    io::remove_stale_temporaries(run_dir);
  }
  RunLog log(main_rank ? run_dir : "", main_rank && ::isatty(STDERR_FILENO) == 1, config.run.log_every);

  const torch::Device device = resolve_device(config.run.device, options.local_rank);
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  const bool channels_last = config.model.channels_last;
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  auto net = build_model(config.model, device);
  if (!config.model.init.empty() && options.resume_from.empty()) {
    std::vector<std::string> init_classes;
    auto tensors = load_model_tensors(config.model.init, &init_classes);
    model::load_state_dict(*net, tensors, config.model.init);
    log.info("initial weights: " + config.model.init);
  }
  // Quantization-aware training: fake quantizers go in after the float weights are loaded (they
  // have no place in a float weights file) and before the optimizer sees the parameters (LSQ steps).
  std::string policy_table;
  if (config.quant.enabled) {
    auto assignments = quant::attach_quantizers(*net, config.quant, device);
    policy_table = quant::format_policy(assignments);
    log.info("quantization policy (saved as quant_policy.txt):\n" + policy_table);
  }
  if (comm) dist::broadcast_module(*comm, *net);  // rank 0's initial weights and buffers everywhere
  Optimizer optimizer(param_groups(*net, config.optim), config.optim);
  LrSchedule schedule(config.schedule, config.optim.lr, tc.epochs, batches);
  std::unique_ptr<ModelEma> ema;
  if (tc.ema.enabled) {
    auto shadow = build_model(config.model, device);
    if (config.quant.enabled) quant::attach_quantizers(*shadow, config.quant, device);
    ema = std::make_unique<ModelEma>(shadow, *net, tc.ema.decay);
  }
  std::shared_ptr<model::ClassifierModel> teacher;
  if (!tc.distill.teacher.empty()) {
    teacher = build_model(config.model, device);
    std::vector<std::string> teacher_classes;
    auto tensors = load_model_tensors(tc.distill.teacher, &teacher_classes);
    model::load_state_dict(*teacher, tensors, tc.distill.teacher);
    check_classes(teacher_classes, classes, tc.distill.teacher);
    teacher->eval();
    for (auto& p : teacher->parameters()) p.set_requires_grad(false);
    log.info("distilling from " + tc.distill.teacher + " (T " + config::format_number(tc.distill.temperature) +
             ", alpha " + config::format_number(tc.distill.alpha) + ")");
  }

  TrainProgress progress;
  if (!options.resume_from.empty()) {
    Checkpoint c = load_checkpoint(options.resume_from);
    check_classes(c.classes, classes, options.resume_from);
    model::load_state_dict(*net, c.model, options.resume_from);
    optimizer.load_state(c.optim, c.progress.optimizer_steps, options.resume_from);
    if (ema) {
      if (c.ema.empty()) throw Error(at_path(options.resume_from, "has no EMA weights but train.ema.enabled is true"));
      model::load_state_dict(ema->shadow(), c.ema, options.resume_from);
    }
    restore_rng(c, device, options.resume_from);
    progress = c.progress;
    if (progress.iteration != progress.epoch * batches + progress.batches_done)
      throw ConfigError(at_path(options.resume_from, "was written with " + std::to_string(progress.iteration) +
                                                         " iterations at epoch " + std::to_string(progress.epoch) +
                                                         "; the data or train.batch_size changed since"));
    log.info("resumed from " + options.resume_from + " at epoch " + std::to_string(progress.epoch + 1) + ", batch " +
             std::to_string(progress.batches_done) + " (iteration " + std::to_string(progress.iteration) + ")");
  }
  // The run's files change only once every input has been checked: a resume that fails (another
  // batch size, a damaged checkpoint) leaves config.yaml as it was, so the next --resume still works.
  if (main_rank) {
    io::write_file_atomic(run_dir + "/config.yaml", config::to_yaml(config));
    if (config.quant.enabled) io::write_file_atomic(run_dir + "/quant_policy.txt", policy_table);
  }
  log.metrics({{"kind", "start"}, {"prom", PROM_VERSION}, {"device", device.str()},
               {"epoch", progress.epoch}, {"iteration", progress.iteration},
               {"resumed", !options.resume_from.empty()}});
  log.info("training " + config.model.arch + " on " + device.str() + ": " + std::to_string(train_source.size()) +
           " samples, " + std::to_string(batches) + " iterations per epoch, " + std::to_string(tc.epochs) +
           " epochs; run directory " + run_dir);

  auto make_checkpoint = [&]() {
    Checkpoint c;
    c.model = model::state_dict(*net);
    c.optim = optimizer.state_tensors();
    if (ema) c.ema = model::state_dict(ema->shadow());
    capture_rng(c, device);
    c.progress = progress;
    c.progress.optimizer_steps = optimizer.steps();
    c.config_yaml = config::to_yaml(config);
    c.classes = classes;
    c.prom_version = PROM_VERSION;
    return c;
  };

  StopSignal stop;
  auto stopped = [&](const std::string& where) {
    int sig = stop.received();
    if (sig == 0) sig = SIGTERM;  // another rank was signalled
    if (main_rank) save_checkpoint(last_checkpoint(run_dir), make_checkpoint());
    log.info(std::string(sig == SIGINT ? "SIGINT" : "SIGTERM") + " received " + where + ": saved " +
             last_checkpoint(run_dir) + "; continue with prom-train --resume " + run_dir);
    log.metrics({{"kind", "stop"}, {"signal", sig}, {"epoch", progress.epoch}, {"batches_done", progress.batches_done},
                 {"iteration", progress.iteration}});
    return sig == SIGINT ? kExitSigint : kExitSigterm;
  };

  std::vector<torch::Tensor> params;
  for (const auto& p : optimizer.params()) params.push_back(p.param);
  std::unique_ptr<dist::GradReducer> reducer;
  if (comm) {
    reducer = std::make_unique<dist::GradReducer>(
        comm, params, static_cast<int64_t>(config.dist.bucket_mb * 1024 * 1024), config.dist.overlap);
    log.info("data-parallel: " + std::to_string(comm->world_size()) + " ranks (" + comm->backend() + "), " +
             std::to_string(reducer->buckets()) + " gradient buckets, per-rank batch " +
             std::to_string(tc.batch_size / comm->world_size()));
  }

  for (int64_t epoch = progress.epoch; epoch < tc.epochs; ++epoch) {
    train_source.start_epoch(epoch);
    for (int64_t i = 0; i < progress.batches_done; ++i)  // mid-epoch resume: the batches already seen
      if (!train_source.next())
        throw Error(at_path(options.resume_from, "the epoch has fewer batches than the checkpoint has trained on"));
    net->train();
    if (tc.freeze_bn)
      for (auto& m : net->modules(false))
        if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) bn->eval();
    if (config.quant.enabled) quant::on_epoch_start(*net, config.quant, static_cast<int>(epoch));
    log.begin_epoch(epoch, tc.epochs, batches, progress.batches_done);
    auto epoch_start = Clock::now();
    double wait = 0, window_wait = 0;
    int64_t epoch_samples = 0, window_samples = 0, window_correct = 0;
    auto window_start = epoch_start;
    while (true) {
      auto wait_start = Clock::now();
      std::optional<data::Batch> batch = train_source.next();
      const double waited = seconds_since(wait_start);
      wait += waited;
      window_wait += waited;
      if (!batch) break;
      const double lr = schedule.lr(progress.iteration);
      optimizer.set_lr(lr);
      torch::Tensor x = batch->images.to(device, /*non_blocking=*/true);
      if (channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
      torch::Tensor y = batch->labels.to(device, true);
      int64_t n = y.size(0);

      torch::Tensor logits = net->forward(x);
      torch::Tensor loss = classification_loss(logits, y, tc.label_smoothing);
      if (teacher) {
        torch::Tensor teacher_logits;
        {
          torch::NoGradGuard no_grad;
          teacher_logits = teacher->forward(x);
        }
        loss = (1.0 - tc.distill.alpha) * loss +
               tc.distill.alpha * distillation_loss(logits, teacher_logits, tc.distill.temperature);
      }
      if (tc.test_hooks.nan_loss_at_iteration == progress.iteration + 1)
        loss = loss * std::numeric_limits<double>::quiet_NaN();
      double loss_value = loss.item<double>();
      Correct correct = count_correct(logits.detach(), y);
      bool stop_now = stop.received() != 0;
      if (comm) {  // the global batch's numbers on every rank (a NaN or a signal anywhere stops all)
        auto g = comm->sum({loss_value * static_cast<double>(n), static_cast<double>(n),
                            static_cast<double>(correct.top1), stop_now ? 1.0 : 0.0});
        loss_value = g[0] / g[1];
        n = static_cast<int64_t>(g[1]);
        correct.top1 = static_cast<int64_t>(g[2]);
        stop_now = g[3] > 0;
      }
      if (!std::isfinite(loss_value)) {
        std::string kept = fs::exists(last_checkpoint(run_dir))
                               ? "the last good checkpoint is " + last_checkpoint(run_dir)
                               : "no checkpoint was written yet";
        log.metrics({{"kind", "error"}, {"epoch", epoch + 1}, {"iteration", progress.iteration + 1},
                     {"loss", std::isnan(loss_value) ? "nan" : "inf"}});
        std::string msg = "iteration " + std::to_string(progress.iteration + 1) + " (epoch " +
                          std::to_string(epoch + 1) + "): the loss is " + (std::isnan(loss_value) ? "NaN" : "Inf") +
                          " (lr " + config::format_number(lr) + "); stopped, " + kept;
        log.error(msg);
        throw Error(msg);
      }
      optimizer.zero_grad();
      loss.backward();
      if (reducer) reducer->finish();  // the gradients averaged over ranks
      if (tc.grad_clip_norm > 0) torch::nn::utils::clip_grad_norm_(params, tc.grad_clip_norm);
      optimizer.step();
      if (comm) dist::average_buffers(*comm, *net);  // BatchNorm statistics, quantizer ranges
      ++progress.iteration;
      ++progress.batches_done;
      if (ema && progress.iteration % tc.ema.every == 0) ema->update(*net);

      progress.loss_sum += loss_value * static_cast<double>(n);
      progress.samples += n;
      progress.correct += correct.top1;
      epoch_samples += n;
      window_samples += n;
      window_correct += correct.top1;
      const double window_seconds = seconds_since(window_start);
      const double images_per_s = window_seconds > 0 ? static_cast<double>(window_samples) / window_seconds : 0;
      log.step(progress.iteration, progress.batches_done, loss_value, lr, images_per_s);
      if (progress.iteration % config.run.log_every == 0) {
        nlohmann::json record = {
            {"kind", "step"}, {"epoch", epoch + 1}, {"batch", progress.batches_done},
            {"iteration", progress.iteration}, {"loss", loss_value}, {"lr", lr},
            {"top1", 100.0 * static_cast<double>(window_correct) / static_cast<double>(window_samples)},
            {"images_per_s", images_per_s},
            {"data_wait", window_seconds > 0 ? window_wait / window_seconds : 0.0}};
        if (reducer) record["allreduce_wait_s"] = reducer->last_wait_seconds();
        if (tc.test_hooks.param_checksum) {  // every rank's model, bit for bit
          const int64_t mine = dist::module_checksum(*net);
          record["param_checksums"] = comm ? comm->all_gather(mine) : std::vector<int64_t>{mine};
        }
        log.metrics(record);
        window_start = Clock::now();
        window_samples = window_correct = 0;
        window_wait = 0;
      }
      if (tc.test_hooks.step_sleep_ms > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(tc.test_hooks.step_sleep_ms));
      if (stop_now) {
        log.end_epoch();
        return stopped("in epoch " + std::to_string(epoch + 1) + " after batch " +
                       std::to_string(progress.batches_done));
      }
    }
    log.end_epoch();
    const double train_seconds = seconds_since(epoch_start);
    nlohmann::json record = {
        {"kind", "epoch"},
        {"epoch", epoch + 1},
        {"iteration", progress.iteration},
        {"lr", optimizer.lr()},
        {"train_loss", progress.samples > 0 ? progress.loss_sum / static_cast<double>(progress.samples) : 0.0},
        {"train_top1", progress.samples > 0 ? 100.0 * static_cast<double>(progress.correct) / progress.samples : 0.0},
        {"images_per_s", train_seconds > 0 ? static_cast<double>(epoch_samples) / train_seconds : 0.0},
        {"data_wait", train_seconds > 0 ? wait / train_seconds : 0.0},
        {"train_seconds", train_seconds}};
    progress.epoch = epoch + 1;
    progress.batches_done = 0;
    progress.loss_sum = 0;
    progress.samples = progress.correct = 0;

    std::string summary = "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(tc.epochs) + ": train loss " +
                          fixed4(record["train_loss"].get<double>()) + ", top-1 " +
                          percent(record["train_top1"].get<double>());
    bool is_best = false;
    const bool eval_now = eval_source != nullptr && ((epoch + 1) % tc.eval_every == 0 || epoch + 1 == tc.epochs);
    if (eval_now) {
      // Each rank scores its shard of the evaluation data; the sums make the global numbers.
      auto reduce = [&](EvalResult& e) {
        if (!comm) return;
        const double m = static_cast<double>(e.samples);
        auto g = comm->sum({e.loss * m, e.top1 * m, e.top5 * m, m});
        e.samples = static_cast<int64_t>(g[3]);
        e.loss = g[3] > 0 ? g[0] / g[3] : 0;
        e.top1 = g[3] > 0 ? g[1] / g[3] : 0;
        e.top5 = g[3] > 0 ? g[2] / g[3] : 0;
      };
      EvalResult r = evaluate(*net, *eval_source, device, channels_last, config.model.num_classes);
      reduce(r);
      record["eval_loss"] = r.loss;
      record["eval_top1"] = r.top1;
      record["eval_top5"] = r.top5;
      record["eval_seconds"] = r.seconds;
      summary += " | eval loss " + fixed4(r.loss) + ", top-1 " + percent(r.top1) + ", top-5 " +
                 percent(r.top5);
      if (ema) {
        EvalResult e = evaluate(ema->shadow(), *eval_source, device, channels_last, config.model.num_classes);
        reduce(e);
        record["ema_eval_top1"] = e.top1;
        record["ema_eval_top5"] = e.top5;
        summary += " | EMA top-1 " + percent(e.top1);
      }
      if (r.top1 > progress.best_top1) {
        progress.best_top1 = r.top1;
        progress.best_epoch = epoch + 1;
        is_best = true;
      }
    }
    char speed[96];
    std::snprintf(speed, sizeof speed, " | %.0f img/s, data wait %.0f%%, %s", record["images_per_s"].get<double>(),
                  100.0 * record["data_wait"].get<double>(), format_duration(train_seconds).c_str());
    log.info(summary + speed);
    log.metrics(record);

    if (main_rank) {
      Checkpoint c = make_checkpoint();
      save_checkpoint(last_checkpoint(run_dir), c);
      if (is_best) save_checkpoint(best_checkpoint(run_dir), c);
      if (config.run.save_every > 0 && (epoch + 1) % config.run.save_every == 0)
        save_checkpoint(epoch_checkpoint(run_dir, epoch + 1), c);
    }
    bool stop_now = stop.received() != 0;
    if (comm) stop_now = comm->sum({stop_now ? 1.0 : 0.0})[0] > 0;
    if (stop_now) return stopped("after epoch " + std::to_string(epoch + 1));
  }
  if (progress.best_top1 >= 0)
    log.info("done: best eval top-1 " + percent(progress.best_top1) + " at epoch " +
             std::to_string(progress.best_epoch) + " (" + best_checkpoint(run_dir) + ")");
  else
    log.info("done: " + last_checkpoint(run_dir));
  return kExitOk;
}

}  // namespace prom::train
