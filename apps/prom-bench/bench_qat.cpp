// `prom-bench train --qat`: ms per QAT training step of prom's MobileNetV2 under a quantization
// policy (PROM by default), against prom's own float step and torch.ao's eager-mode QAT step
// (torchvision's quantizable mobilenet_v2, fused; the fastest of the fbgemm/onednn/qnnpack QAT
// qconfigs and both memory formats, with prom's tcmalloc preloaded) in Python, in the same run on
// the same threads and batches as `prom-bench train`.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <torch/csrc/autograd/profiler_legacy.h>

#include "bench_train.h"
#include "build_paths.h"
#include "config/config.h"
#include "core/build_info.h"
#include "core/error.h"
#include "model/registry.h"
#include "quant/policy.h"
#include "train/loss.h"
#include "train/optimizer.h"

namespace prom::bench {
namespace {

using Clock = std::chrono::steady_clock;

// One side of the comparison: the trainer's step, as prom_step_ms (bench_train.cpp) runs it.
struct Stepper {
  std::shared_ptr<model::ClassifierModel> model;
  std::unique_ptr<train::Optimizer> opt;
  std::vector<double> total, forward, backward, update;
  bool cuda;
  Stepper(const TrainCase& c, const TrainBenchOptions& o, const config::QuantConfig* quant)
      : cuda(o.device == "cuda") {
    BenchModel b = make_bench_model(c, o, quant);
    model = b.model;
    opt = std::move(b.optimizer);
  }
  // Each phase ends when the device has finished it (a CUDA step is queued asynchronously).
  Clock::time_point now() const {
    if (cuda) torch::cuda::synchronize();
    return Clock::now();
  }
  void step(const torch::Tensor& x, const torch::Tensor& y, bool record) {
    auto ms = [](Clock::time_point a, Clock::time_point b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    auto t0 = now();
    opt->zero_grad();
    torch::Tensor loss = train::classification_loss(model->forward(x), y, 0.0);
    auto t1 = now();
    loss.backward();
    auto t2 = now();
    opt->step();
    auto t3 = now();
    if (!record) return;
    total.push_back(ms(t0, t3));
    forward.push_back(ms(t0, t1));
    backward.push_back(ms(t1, t2));
    update.push_back(ms(t2, t3));
  }
  StepTimes medians() const {
    auto med = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    return {med(total), med(forward), med(backward), med(update)};
  }
};

// QAT and float steps alternate, so that both see the same machine load (this is run next to
// training jobs); the ratio is the median of the per-pair ratios.
struct PairTimes {
  StepTimes qat, fp;
  double ratio;
};

PairTimes interleaved_steps(const TrainCase& c, const TrainBenchOptions& o, const config::QuantConfig& quant) {
  Stepper q(c, o, &quant), f(c, o, nullptr);
  torch::manual_seed(1);
  const torch::Device device(o.device);
  torch::Tensor x = torch::randn({c.batch, 3, c.size, c.size}).contiguous(torch::MemoryFormat::ChannelsLast).to(device);
  torch::Tensor y = torch::randint(0, c.classes, {c.batch}, torch::kInt64).to(device);
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    q.step(x, y, i >= o.warmup);
    f.step(x, y, i >= o.warmup);
  }
  if (!o.profile.empty()) {  // one more step of each under LibTorch's profiler (chrome traces)
    {
      torch::autograd::profiler::RecordProfile guard(o.profile + ".qat." + std::to_string(c.size) + ".json");
      q.step(x, y, false);
    }
    torch::autograd::profiler::RecordProfile guard(o.profile + ".float." + std::to_string(c.size) + ".json");
    f.step(x, y, false);
  }
  std::vector<double> ratios;
  for (size_t i = 0; i < q.total.size(); ++i) ratios.push_back(q.total[i] / f.total[i]);
  std::sort(ratios.begin(), ratios.end());
  return {q.medians(), f.medians(), ratios[ratios.size() / 2]};
}

// Which torch.ao configuration the comparison used (the fastest of every qconfig and format the
// script tried), and what each one measured.
void print_ao_choice(const nlohmann::json& ao) {
  std::string all;
  for (const char* b : {"fbgemm", "onednn", "qnnpack"}) {
    const std::string k = b;
    if (!ao.contains(k + "_contiguous_ms")) continue;
    char one[128];
    std::snprintf(one, sizeof one, "%s%s %.1f/%.1f", all.empty() ? "" : ", ", b, ao[k + "_contiguous_ms"].get<double>(),
                  ao[k + "_channels_last_ms"].get<double>());
    all += one;
    if (ao.value(k + "_engine", std::string("none")) == "none") all += " (engine not in this torch)";
  }
  std::printf("%-14s torch.ao used: qconfig %s, %s (fastest; NCHW/NHWC ms per qconfig: %s)\n", "",
              ao.value("qconfig", std::string("?")).c_str(), ao.value("format", std::string("?")).c_str(), all.c_str());
}

}  // namespace

int run_qat_bench(const TrainBenchOptions& options) {
  TrainBenchOptions o = options;
  if (o.policy.empty()) o.policy = source_dir() + "/configs/policies/prom.yaml";
  if (o.qat_script.empty()) o.qat_script = scripts_dir() + "/bench_qat_torchvision.py";
  const config::QuantConfig quant = load_policy(o.policy);
  if (!quant.enabled) throw ConfigError(o.policy + ": quant.enabled is false: nothing to measure with --qat");
  set_threads(o.threads);
  const int threads = build_info().threads;
  if (o.width_mult != 1.0 && !o.skip_torchvision)
    throw ConfigError("--width: torch.ao's side runs width 1.0 only; add --skip-torchvision");
  std::printf("prom-bench train --qat: MobileNetV2 %.2g on %s, policy %s, SGD step (forward, loss, backward, "
              "update), %d thread(s), median of %d steps\n", o.width_mult, o.device.c_str(), o.policy.c_str(), threads,
              o.iters);
  std::printf("%-14s %10s %10s %12s %12s %10s %10s\n", "case", "qat ms", "float ms", "ao NCHW ms", "ao NHWC ms",
              "qat/float", "qat/ao");
  const TrainCase cases[] = {{32, 224, 1000}, {128, 32, 10}};
  double worst_float = 0, worst_ao = 0;
  for (const TrainCase& c : cases) {
    char name[32];
    std::snprintf(name, sizeof name, "%lldx%lld px", static_cast<long long>(c.batch), static_cast<long long>(c.size));
    const PairTimes pair = interleaved_steps(c, o, quant);
    const StepTimes& q = pair.qat;
    const StepTimes& f = pair.fp;
    const double vs_float = pair.ratio;
    worst_float = std::max(worst_float, vs_float);
    if (o.skip_torchvision) {
      std::printf("%-14s %10.1f %10.1f %12s %12s %10.2f %10s\n", name, q.total, f.total, "-", "-", vs_float, "-");
    } else {
      std::string cmd = o.python + " " + o.qat_script + " --batch " + std::to_string(c.batch) + " --size " +
                        std::to_string(c.size) + " --classes " + std::to_string(c.classes) + " --threads " +
                        std::to_string(threads) + " --warmup " + std::to_string(o.warmup) + " --iters " +
                        std::to_string(o.iters) + " --device " + o.device;
      auto ao = run_python_json(cmd, o.qat_script);
      const double nchw = ao["contiguous_ms"].get<double>(), nhwc = ao["channels_last_ms"].get<double>();
      const double vs_ao = q.total / std::min(nchw, nhwc);
      worst_ao = std::max(worst_ao, vs_ao);
      std::printf("%-14s %10.1f %10.1f %12.1f %12.1f %10.2f %10.2f\n", name, q.total, f.total, nchw, nhwc, vs_float,
                  vs_ao);
      print_ao_choice(ao);
    }
    std::printf("%-14s qat: forward+loss %.1f, backward %.1f, update %.1f ms; float: %.1f, %.1f, %.1f ms\n", "",
                q.forward, q.backward, q.update, f.forward, f.backward, f.update);
    std::fflush(stdout);
  }
  std::printf("qat/float = median over alternating pairs of prom QAT / prom float steps (target <= 1.3): worst %.2f\n",
              worst_float);
  if (!o.skip_torchvision)
    std::printf("qat/ao = prom QAT / torch.ao QAT in its fastest qconfig and format (target <= 1.0): worst %.2f\n",
                worst_ao);
  return 0;
}

}  // namespace prom::bench
