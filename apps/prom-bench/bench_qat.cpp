// `prom-bench train --qat`: ms per QAT training step of prom's MobileNetV2 under a quantization
// policy (PROM by default), against prom's own float step and torch.ao's eager-mode QAT step
// (torchvision's quantizable mobilenet_v2, fused, fbgemm QAT qconfig) in Python, in the same run
// on the same threads and batches as `prom-bench train`.
#include <algorithm>
#include <cstdio>

#include "bench_train.h"
#include "config/config.h"
#include "core/build_info.h"
#include "core/error.h"

namespace prom::bench {

int run_qat_bench(const TrainBenchOptions& options) {
  TrainBenchOptions o = options;
  if (o.policy.empty()) o.policy = std::string(PROM_BENCH_SCRIPTS) + "/../configs/policies/prom.yaml";
  if (o.qat_script.empty()) o.qat_script = std::string(PROM_BENCH_SCRIPTS) + "/bench_qat_torchvision.py";
  const config::QuantConfig quant = load_policy(o.policy);
  if (!quant.enabled) throw ConfigError(o.policy + ": quant.enabled is false: nothing to measure with --qat");
  set_threads(o.threads);
  const int threads = build_info().threads;
  if (o.width_mult != 1.0 && !o.skip_torchvision)
    throw ConfigError("--width: torch.ao's side runs width 1.0 only; add --skip-torchvision");
  std::printf("prom-bench train --qat: MobileNetV2 %.2g, policy %s, SGD step (forward, loss, backward, update), "
              "%d thread(s), median of %d steps\n", o.width_mult, o.policy.c_str(), threads, o.iters);
  std::printf("%-14s %10s %10s %12s %12s %10s %10s\n", "case", "qat ms", "float ms", "ao NCHW ms", "ao NHWC ms",
              "qat/float", "qat/ao");
  const TrainCase cases[] = {{32, 224, 1000}, {128, 32, 10}};
  double worst_float = 0, worst_ao = 0;
  for (const TrainCase& c : cases) {
    char name[32];
    std::snprintf(name, sizeof name, "%lldx%lld px", static_cast<long long>(c.batch), static_cast<long long>(c.size));
    const StepTimes q = prom_step_ms(c, o, &quant);
    const StepTimes f = prom_step_ms(c, o, nullptr);
    const double vs_float = q.total / f.total;
    worst_float = std::max(worst_float, vs_float);
    if (o.skip_torchvision) {
      std::printf("%-14s %10.1f %10.1f %12s %12s %10.2f %10s\n", name, q.total, f.total, "-", "-", vs_float, "-");
    } else {
      std::string cmd = o.python + " " + o.qat_script + " --batch " + std::to_string(c.batch) + " --size " +
                        std::to_string(c.size) + " --classes " + std::to_string(c.classes) + " --threads " +
                        std::to_string(threads) + " --warmup " + std::to_string(o.warmup) + " --iters " +
                        std::to_string(o.iters);
      auto ao = run_python_json(cmd, o.qat_script);
      const double nchw = ao["contiguous_ms"].get<double>(), nhwc = ao["channels_last_ms"].get<double>();
      const double vs_ao = q.total / std::min(nchw, nhwc);
      worst_ao = std::max(worst_ao, vs_ao);
      std::printf("%-14s %10.1f %10.1f %12.1f %12.1f %10.2f %10.2f\n", name, q.total, f.total, nchw, nhwc, vs_float,
                  vs_ao);
    }
    std::printf("%-14s qat: forward+loss %.1f, backward %.1f, update %.1f ms; float: %.1f, %.1f, %.1f ms\n", "",
                q.forward, q.backward, q.update, f.forward, f.backward, f.update);
    std::fflush(stdout);
  }
  std::printf("qat/float = prom QAT / prom float (target <= 1.5): worst %.2f\n", worst_float);
  if (!o.skip_torchvision)
    std::printf("qat/ao = prom QAT / faster torch.ao QAT format (target <= 1.0): worst %.2f\n", worst_ao);
  return 0;
}

}  // namespace prom::bench
