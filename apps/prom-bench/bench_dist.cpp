#include "bench_dist.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "distributed/comm.h"
#include "distributed/world.h"
#include "model/registry.h"
#include "train/loss.h"
#include "train/optimizer.h"

namespace prom::bench {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// One rank: the trainer's step (forward, loss, backward with the reducer's hooks, the reducer's
// finish, SGD, buffer averaging) on its B / world samples. Prints one JSON line.
int run_worker(const DistBenchOptions& o) {
  const dist::WorldInfo world = dist::detect_world();
  torch::set_num_threads(o.threads);
  const int64_t local_batch = dist::per_rank_batch(o.batch, world.world_size);
  std::shared_ptr<dist::Comm> comm;
  config::DistConfig dc;
  dc.bucket_mb = o.bucket_mb;
  dc.overlap = o.overlap;
  dc.timeout_s = 120;
  if (world.distributed()) comm = dist::Comm::connect(world, dc, torch::Device(torch::kCPU));
  torch::manual_seed(0);
  config::ModelConfig mc;
  mc.num_classes = o.classes;
  mc.width_mult = o.width_mult;
  mc.small_input = true;
  mc.input_size = o.size;
  auto model = model::create_model(mc);
  model::to_channels_last(*model);
  if (comm) dist::broadcast_module(*comm, *model);
  model->train();
  config::OptimConfig oc;
  oc.lr = 0.01;
  oc.momentum = 0.9;
  train::Optimizer opt(train::param_groups(*model, oc), oc);
  std::vector<torch::Tensor> params;
  for (const auto& p : opt.params()) params.push_back(p.param);
  std::unique_ptr<dist::GradReducer> reducer;
  if (comm)
    reducer = std::make_unique<dist::GradReducer>(comm, params, static_cast<int64_t>(o.bucket_mb * 1024 * 1024),
                                                  o.overlap);
  torch::manual_seed(1 + world.rank);
  torch::Tensor x = torch::randn({local_batch, 3, o.size, o.size}).contiguous(torch::MemoryFormat::ChannelsLast);
  torch::Tensor y = torch::randint(0, o.classes, {local_batch}, torch::kInt64);
  std::vector<double> step, wait, span, backward;
  for (int i = 0; i < o.warmup + o.steps; ++i) {
    if (comm) comm->sum({0.0});  // start every step together (the trainer's metric reduce)
    auto t0 = Clock::now();
    opt.zero_grad();
    torch::Tensor loss = train::classification_loss(model->forward(x), y, 0.0);
    loss.item<double>();
    auto tb = Clock::now();
    loss.backward();
    const double back = ms_since(tb);
    if (reducer) reducer->finish();
    opt.step();
    if (comm) dist::average_buffers(*comm, *model);
    const double total = ms_since(t0);
    if (i < o.warmup) continue;
    step.push_back(total);
    backward.push_back(back);
    wait.push_back(reducer ? 1000.0 * reducer->last_wait_seconds() : 0.0);
    span.push_back(reducer ? 1000.0 * reducer->last_comm_seconds() : 0.0);
  }
  int64_t grad_bytes = 0;
  for (auto& p : params) grad_bytes += p.numel() * static_cast<int64_t>(p.element_size());
  nlohmann::json out = {{"rank", world.rank},
                        {"world", world.world_size},
                        {"step_ms", median(step)},
                        {"backward_ms", median(backward)},
                        {"allreduce_wait_ms", median(wait)},
                        {"allreduce_span_ms", median(span)},
                        {"buckets", reducer ? static_cast<int64_t>(reducer->buckets()) : 0},
                        {"grad_mb", static_cast<double>(grad_bytes) / (1024.0 * 1024.0)}};
  std::cout << out.dump() << std::endl;
  return 0;
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw Error("prom-bench dist: cannot find its own executable (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

// Starts `world` workers at once and returns rank 0's JSON.
nlohmann::json run_job(const DistBenchOptions& o, int world, int port) {
  char args[512];
  std::snprintf(args, sizeof args,
                " dist --worker --batch %lld --size %lld --width %g --classes %lld --threads %d --warmup %d"
                " --steps %d --bucket-mb %g%s",
                static_cast<long long>(o.batch), static_cast<long long>(o.size), o.width_mult,
                static_cast<long long>(o.classes), o.threads, o.warmup, o.steps, o.bucket_mb,
                o.overlap ? "" : " --no-overlap");
  std::vector<FILE*> pipes;
  for (int r = 0; r < world; ++r) {
    std::string cmd = "OMP_NUM_THREADS=" + std::to_string(o.threads) + " RANK=" + std::to_string(r) +
                      " WORLD_SIZE=" + std::to_string(world) + " LOCAL_RANK=" + std::to_string(r) +
                      " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " '" + self_exe() + "'" + args +
                      " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) throw Error("prom-bench dist: cannot start a worker");
    pipes.push_back(p);
  }
  nlohmann::json result;
  std::string failures;
  for (int r = 0; r < world; ++r) {
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, pipes[r])) > 0) out.append(buf, n);
    const int status = ::pclose(pipes[r]);
    const auto brace = out.rfind('{');
    if (status != 0 || brace == std::string::npos) {
      failures += " rank " + std::to_string(r) + ": " + out;
      continue;
    }
    if (r == 0) result = nlohmann::json::parse(out.substr(brace));
  }
  if (!failures.empty()) throw Error("prom-bench dist: a worker failed:" + failures);
  return result;
}

}  // namespace

CLI::App* add_dist_command(CLI::App& cli, DistBenchOptions& o) {
  CLI::App* cmd = cli.add_subcommand(
      "dist", "data-parallel speed-up: 1 process at global batch B vs 2 processes (Gloo, loopback) at B/2");
  cmd->add_option("--batch", o.batch, "global batch B (even)")->capture_default_str()->check(CLI::Range(2, 4096));
  cmd->add_option("--size", o.size, "input pixels")->capture_default_str()->check(CLI::Range(8, 1024));
  cmd->add_option("--width", o.width_mult, "MobileNetV2 width multiplier")->capture_default_str()->check(CLI::Range(0.1, 4.0));
  cmd->add_option("--classes", o.classes, "classes")->capture_default_str()->check(CLI::Range(2, 100000));
  cmd->add_option("--threads", o.threads, "intra-op threads per process")->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_option("--warmup", o.warmup, "untimed steps")->capture_default_str()->check(CLI::Range(0, 1000));
  cmd->add_option("--steps", o.steps, "timed steps (medians reported)")->capture_default_str()->check(CLI::Range(1, 10000));
  cmd->add_option("--bucket-mb", o.bucket_mb, "gradient bucket size")->capture_default_str()->check(CLI::Range(0.01, 4096.0));
  cmd->add_flag("!--no-overlap", o.overlap, "all-reduce after backward instead of during it");
  cmd->add_flag("--json", o.json, "print one JSON object");
  cmd->add_flag("--worker", o.worker, "internal: one rank of the benchmark")->group("");
  return cmd;
}

int run_dist_bench(const DistBenchOptions& o) {
  if (o.worker) return run_worker(o);
  if (o.batch < 2 || o.batch % 2 != 0) throw ConfigError("--batch: must be even (split over 2 processes)");
  const int port = 20000 + static_cast<int>(::getpid() % 20000);
  nlohmann::json one = run_job(o, 1, port);
  nlohmann::json two = run_job(o, 2, port);
  const double speedup = two["step_ms"].get<double>() > 0
                             ? one["step_ms"].get<double>() / two["step_ms"].get<double>() : 0.0;
  nlohmann::json out = {{"batch", o.batch}, {"size", o.size}, {"width_mult", o.width_mult},
                        {"threads_per_process", o.threads}, {"overlap", o.overlap},
                        {"one_process", one}, {"two_processes", two}, {"speedup", speedup},
                        {"cores", std::thread::hardware_concurrency()}};
  if (o.json) {
    std::cout << out.dump(2) << std::endl;
    return 0;
  }
  std::printf("data-parallel MobileNetV2 (width %g, %lld px), global batch %lld, %d thread(s) per process, %u cores\n",
              o.width_mult, static_cast<long long>(o.size), static_cast<long long>(o.batch), o.threads,
              std::thread::hardware_concurrency());
  std::printf("  1 process  x batch %-4lld %8.1f ms/step\n", static_cast<long long>(o.batch),
              one["step_ms"].get<double>());
  std::printf("  2 processes x batch %-4lld %8.1f ms/step  (speed-up %.2fx)\n", static_cast<long long>(o.batch / 2),
              two["step_ms"].get<double>(), speedup);
  std::printf("  all-reduce of %.2f MB of gradients in %lld bucket(s): %.2f ms waited after backward, %.2f ms from "
              "the first bucket's start (backward %.1f ms)\n",
              two["grad_mb"].get<double>(), static_cast<long long>(two["buckets"].get<int64_t>()),
              two["allreduce_wait_ms"].get<double>(), two["allreduce_span_ms"].get<double>(),
              two["backward_ms"].get<double>());
  return 0;
}

}  // namespace prom::bench
