#include "bench_train.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <torch/csrc/autograd/profiler_legacy.h>

#include "build_paths.h"
#include "config/config.h"
#include "core/build_info.h"
#include "core/error.h"
#include "model/registry.h"
#include "python_ref.h"
#include "quant/policy.h"
#include "core/autocast.h"
#include "train/grad_scaler.h"
#include "train/loss.h"
#include "train/optimizer.h"

namespace prom::bench {
namespace {

using Clock = std::chrono::steady_clock;

using Case = TrainCase;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

BenchModel make_bench_model(const Case& c, const TrainBenchOptions& o, const config::QuantConfig* quant) {
  torch::manual_seed(0);
  config::ModelConfig mc;
  mc.num_classes = c.classes;
  mc.width_mult = o.width_mult;
  BenchModel b;
  b.model = model::create_model(mc);
  b.model->to(torch::Device(o.device));
  model::to_channels_last(*b.model);
  if (quant != nullptr) quant::attach_quantizers(*b.model, *quant, torch::Device(o.device));
  b.model->train();
  config::OptimConfig oc;
  oc.lr = 0.01;
  oc.momentum = 0.9;
  oc.weight_decay = 4e-5;
  oc.no_decay_bn_bias = false;  // as the Python side: every parameter decays
  b.optimizer = std::make_unique<train::Optimizer>(train::param_groups(*b.model, oc), oc);
  return b;
}

// The trainer's step (lib/train/train_step.cpp): forward under autocast with --amp, the loss in
// fp32, backward (fp16: of the scaled loss, then the unscale and its finite check), the update. The
// trainer reads nothing back per step; on CUDA each phase ends with a synchronize so that it can
// be timed.
StepTimes prom_step_ms(const Case& c, const TrainBenchOptions& o, const config::QuantConfig* quant) {
  BenchModel bench = make_bench_model(c, o, quant);
  auto& model = bench.model;
  train::Optimizer& opt = *bench.optimizer;
  const torch::Device device(o.device);
  const Amp amp = parse_amp(o.amp);
  train::GradScaler scaler;
  std::vector<torch::Tensor> params;
  for (const auto& p : opt.params()) params.push_back(p.param);
  torch::Tensor x = torch::randn({c.batch, 3, c.size, c.size}).contiguous(torch::MemoryFormat::ChannelsLast).to(device);
  torch::Tensor y = torch::randint(0, c.classes, {c.batch}, torch::kInt64).to(device);
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  auto step = [&](std::vector<Clock::time_point>* t) {
    auto mark = [&] {
      sync();
      if (t != nullptr) t->push_back(Clock::now());
    };
    mark();
    opt.zero_grad();
    torch::Tensor logits;
    {
      AutocastScope autocast(amp, device);
      logits = model->forward(x);
    }
    torch::Tensor loss = train::classification_loss(logits.to(torch::kFloat32), y, 0.0);
    mark();
    (amp == Amp::kFp16 ? scaler.scale_loss(loss) : loss).backward();
    mark();
    const bool finite = amp != Amp::kFp16 || scaler.unscale(params);
    if (finite) opt.step();
    if (amp == Amp::kFp16) scaler.update(finite);
    mark();
  };
  std::vector<double> total, forward, backward, update;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    std::vector<Clock::time_point> t;
    step(&t);
    if (i < o.warmup) continue;
    total.push_back(ms(t[0], t[3]));
    forward.push_back(ms(t[0], t[1]));
    backward.push_back(ms(t[1], t[2]));
    update.push_back(ms(t[2], t[3]));
  }
  if (!o.profile.empty()) {
    std::string path = o.profile + (quant != nullptr ? ".qat" : ".float") + "." + std::to_string(c.size) + ".json";
    torch::autograd::profiler::RecordProfile guard(path);
    step(nullptr);
  }
  return {median(total), median(forward), median(backward), median(update)};
}

config::QuantConfig load_policy(const std::string& path) {
  char name[] = "/tmp/prom-bench-policy-XXXXXX.yaml";
  int fd = ::mkstemps(name, 5);
  if (fd < 0) throw Error(std::string("cannot create a temporary file ") + name);
  std::string text = "base: " + std::filesystem::absolute(path).string() +
                     "\nmodel: {arch: mobilenet_v2, num_classes: 1000}\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  try {
    if (!ok) throw Error(std::string("cannot write ") + name);
    config::QuantConfig q = config::load_config(name).quant;
    std::remove(name);
    return q;
  } catch (...) {
    std::remove(name);
    throw;
  }
}

nlohmann::json run_python_json(const std::string& command, const std::string& script) {
  note_python_allocator();  // python_ref.h: the Python side runs with prom's allocator
  std::string cmd = python_allocator_env() + command + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) throw Error(script + ": cannot run " + command);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  int status = ::pclose(pipe);
  auto start = out.rfind('{');
  if (status == 0 && start != std::string::npos) {
    try {
      return nlohmann::json::parse(out.substr(start));
    } catch (const std::exception&) {
    }
  }
  // The last line a failed Python run prints says why (a traceback's exception).
  const size_t end = out.find_last_not_of(" \n");
  const size_t begin = end == std::string::npos ? 0 : out.rfind('\n', end) + 1;  // npos + 1 == 0
  const std::string why = end == std::string::npos ? "no output" : out.substr(begin, end + 1 - begin);
  throw Error(script + ": python benchmark failed: " + why.substr(0, 300));
}

namespace {

nlohmann::json torchvision_step_ms(const Case& c, const TrainBenchOptions& o, int threads) {
  std::string cmd = o.python + " " + o.script + " --batch " + std::to_string(c.batch) + " --size " +
                    std::to_string(c.size) + " --classes " + std::to_string(c.classes) + " --threads " +
                    std::to_string(threads) + " --warmup " + std::to_string(o.warmup) + " --iters " +
                    std::to_string(o.iters) + " --device " + o.device + " --amp " + o.amp;
  return run_python_json(cmd, o.script);
}

}  // namespace

CLI::App* add_train_command(CLI::App& cli, TrainBenchOptions& o) {
  auto* c = cli.add_subcommand("train", "ms per training step: prom's MobileNetV2 vs torchvision's, same threads");
  c->add_option("--threads", o.threads, "intra-op threads for both (0: one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  c->add_option("--warmup", o.warmup, "untimed steps first")->capture_default_str()->check(CLI::Range(0, 100));
  c->add_option("--iters", o.iters, "timed steps (median reported)")->capture_default_str()->check(CLI::Range(1, 1000));
  c->add_option("--width", o.width_mult, "MobileNetV2 width multiplier")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 4.0));
  c->add_option("--python", o.python, "Python with torch and torchvision")->capture_default_str();
  c->add_option("--script", o.script, "the torchvision side (default: scripts/bench_train_torchvision.py)");
  c->add_flag("--skip-torchvision", o.skip_torchvision, "measure prom only");
  c->add_flag("--qat", o.qat, "PROM QAT step vs prom's float step vs torch.ao's eager QAT step");
  c->add_option("--policy", o.policy, "--qat: quantization policy (default: configs/policies/prom.yaml)");
  c->add_option("--profile", o.profile, "profile one more prom step: chrome traces PREFIX.{qat,float}.SIZE.json");
  c->add_option("--qat-script", o.qat_script, "--qat: torch.ao's side (default: scripts/bench_qat_torchvision.py)");
  c->add_option("--amp", o.amp, "prom's step under autocast (train.amp) beside its fp32 step: off, bf16 or fp16 (CUDA)")
      ->capture_default_str()
      ->check(CLI::IsMember({"off", "bf16", "fp16"}));
  c->add_option("--device", o.device, "where prom's side runs: cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  return c;
}

namespace {

void check_device_and_amp(const TrainBenchOptions& o) {
  if (o.device == "cuda" && !torch::cuda::is_available())
    throw ConfigError("--device cuda: CUDA is not available here (no GPU visible, or a CPU-only LibTorch)");
  if (o.amp == "fp16" && o.device != "cuda")
    throw ConfigError("--amp fp16: needs --device cuda (fp16 autocast and loss scaling are CUDA-only; use bf16 on a CPU)");
  if (o.qat && o.amp != "off")
    throw ConfigError("--qat: measured in fp32 only (on the CPU or --device cuda); drop --amp");
}

// torchvision's step in its faster memory format, or a negative value when the Python side cannot
// run it (an older torch without that autocast's kernels, say): said once, on a SKIPPED line.
double torchvision_or_skip(const Case& c, const TrainBenchOptions& o, int threads, bool& said) {
  if (o.skip_torchvision) return -1;
  try {
    auto tv = torchvision_step_ms(c, o, threads);
    return std::min(tv["contiguous_ms"].get<double>(), tv["channels_last_ms"].get<double>());
  } catch (const Error& e) {
    if (!said) std::printf("SKIPPED torchvision reference (%s, amp %s): %s\n", o.device.c_str(), o.amp.c_str(), e.what());
    said = true;
    return -1;
  }
}

// A figure with `digits` decimals, or "-" where the reference did not run (negative).
std::string figure_or_dash(double value, int digits) {
  if (value < 0) return "-";
  char s[32];
  std::snprintf(s, sizeof s, "%.*f", digits, value);
  return s;
}

// `prom-bench train --amp`/`--device cuda`: prom's fp32 step and, with --amp, its autocast step, each
// beside torchvision's same step on the same device (its faster memory format; fp16 with torch's
// GradScaler); ratio = prom / torchvision.
int run_device_bench(const TrainBenchOptions& o, int threads) {
  std::printf("prom-bench train: MobileNetV2 %.2g on %s, SGD step (forward, loss, backward, update), %d thread(s), "
              "median of %d steps; tv = torchvision, faster memory format\n", o.width_mult, o.device.c_str(), threads,
              o.iters);
  const bool amp = o.amp != "off";
  std::printf("%-12s %9s %9s %9s", "case", "fp32 ms", "tv ms", "ratio");
  if (amp) std::printf(" %9s %9s %9s %9s", (o.amp + " ms").c_str(), "tv ms", "ratio", "amp/fp32");
  std::printf("\n");
  const Case cases[] = {{32, 224, 1000}, {128, 32, 10}};
  bool said32 = false, said_amp = false;
  for (const Case& c : cases) {
    char name[32];
    std::snprintf(name, sizeof name, "%lldx%lld px", static_cast<long long>(c.batch), static_cast<long long>(c.size));
    TrainBenchOptions fp32 = o;
    fp32.amp = "off";
    // Every figure first: the Python side may print a line of its own (allocator, SKIPPED).
    const StepTimes f = prom_step_ms(c, fp32);
    const double tv32 = torchvision_or_skip(c, fp32, threads, said32);
    StepTimes a;
    double tva = -1;
    if (amp) {
      a = prom_step_ms(c, o);
      tva = torchvision_or_skip(c, o, threads, said_amp);
    }
    std::printf("%-12s %9.1f %9s %9s", name, f.total, figure_or_dash(tv32, 1).c_str(),
                figure_or_dash(tv32 < 0 ? -1 : f.total / tv32, 2).c_str());
    if (amp) {
      std::printf(" %9.1f %9s %9s %9.2f", a.total, figure_or_dash(tva, 1).c_str(),
                  figure_or_dash(tva < 0 ? -1 : a.total / tva, 2).c_str(), a.total / f.total);
      std::printf("\n%-12s %s: forward+loss %.1f, backward %.1f, update %.1f ms", "", o.amp.c_str(), a.forward,
                  a.backward, a.update);
    }
    std::printf("\n%-12s fp32: forward+loss %.1f, backward %.1f, update %.1f ms\n", "", f.forward, f.backward, f.update);
    std::fflush(stdout);
  }
  std::printf("ratio = prom / torchvision on the same device and precision (<= 1.0: prom is no slower)\n");
  return 0;
}

}  // namespace

int run_train_bench(const TrainBenchOptions& options) {
  check_device_and_amp(options);
  if (options.qat) return run_qat_bench(options);
  TrainBenchOptions o = options;
  if (o.script.empty()) o.script = scripts_dir() + "/bench_train_torchvision.py";
  set_threads(o.threads);
  const int threads = build_info().threads;
  if (o.amp != "off" || o.device != "cpu") return run_device_bench(o, threads);
  if (o.width_mult != 1.0 && !o.skip_torchvision)
    throw ConfigError("--width: torchvision's side runs width 1.0 only; add --skip-torchvision");
  std::printf("prom-bench train: MobileNetV2 %.2g, SGD step (forward, loss, backward, update), %d thread(s), "
              "median of %d steps\n", o.width_mult, threads, o.iters);
  std::printf("%-16s %12s %14s %14s %8s\n", "case", "prom ms", "tv NCHW ms", "tv NHWC ms", "ratio");
  const Case cases[] = {{32, 224, 1000}, {128, 32, 10}};
  double worst = 0;
  for (const Case& c : cases) {
    char name[32];
    std::snprintf(name, sizeof name, "%lldx%lld px", static_cast<long long>(c.batch), static_cast<long long>(c.size));
    const StepTimes t = prom_step_ms(c, o);
    const double ours = t.total;
    if (o.skip_torchvision) {
      std::printf("%-16s %12.1f %14s %14s %8s\n", name, ours, "-", "-", "-");
      std::printf("%-16s prom: forward+loss %.1f, backward %.1f, update %.1f ms\n", "", t.forward, t.backward, t.update);
      continue;
    }
    auto tv = torchvision_step_ms(c, o, threads);
    const double nchw = tv["contiguous_ms"].get<double>(), nhwc = tv["channels_last_ms"].get<double>();
    const double ratio = ours / std::min(nchw, nhwc);
    worst = std::max(worst, ratio);
    std::printf("%-16s %12.1f %14.1f %14.1f %8.2f\n", name, ours, nchw, nhwc, ratio);
    std::printf("%-16s prom: forward+loss %.1f, backward %.1f, update %.1f ms\n", "", t.forward, t.backward, t.update);
    std::fflush(stdout);
  }
  if (!o.skip_torchvision)
    std::printf("ratio = prom / faster torchvision format (target <= 1.0); worst %.2f\n", worst);
  return 0;
}

}  // namespace prom::bench
