// `prom-bench train`: ms per training step (forward, loss, backward, SGD) of prom's MobileNetV2
// against torchvision's mobilenet_v2 in Python, in the same run on the same threads, at batch 32 x
// 224 px and batch 128 x 32 px. The ratio is prom / torchvision (<= 1.0: prom is no slower), where
// torchvision gets the faster of its two memory formats.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>

#include "config/quant_config.h"
#include "model/layer.h"
#include "train/optimizer.h"

namespace prom::bench {

struct TrainBenchOptions {
  int threads = 0;    // intra-op threads for both sides; 0 = one per available core
  int warmup = 2;
  int iters = 5;      // timed steps; the median is reported
  double width_mult = 1.0;
  std::string python = "/usr/bin/python3";  // Debian's, with python3-torch and python3-torchvision
  std::string script;                       // default: scripts/bench_train_torchvision.py
  bool skip_torchvision = false;
  bool qat = false;         // --qat: PROM QAT step vs float step vs torch.ao's QAT (bench_qat.cpp)
  std::string policy;       // --qat: the quantization policy (default: configs/policies/prom.yaml)
  std::string qat_script;   // --qat: torch.ao's side (default: scripts/bench_qat_torchvision.py)
  std::string profile;      // one more step of prom's under LibTorch's profiler, as a chrome trace here
  std::string amp = "off";  // --amp bf16|fp16: prom's step under autocast (train.amp), beside its fp32 step
  std::string device = "cpu";  // --device cuda: prom's side on the GPU
};

struct TrainCase {
  int64_t batch, size, classes;
};

struct StepTimes {
  double total = 0, forward = 0, backward = 0, update = 0;  // medians, ms
};

// prom's training step (the trainer's calls) on a channels-last MobileNetV2; with `quant`, the
// policy's fake quantizers are attached first (as the trainer does: after channels_last).
// The benchmarked model (channels-last MobileNetV2, quantizers attached when `quant` is set, train
// mode) and its optimizer (SGD 0.01, momentum 0.9, weight decay 4e-5 on every parameter, as the
// Python side).
struct BenchModel {
  std::shared_ptr<model::ClassifierModel> model;
  std::unique_ptr<train::Optimizer> optimizer;
};
BenchModel make_bench_model(const TrainCase& c, const TrainBenchOptions& o, const config::QuantConfig* quant);

StepTimes prom_step_ms(const TrainCase& c, const TrainBenchOptions& o, const config::QuantConfig* quant = nullptr);
// The `quant:` section of a policy file (configs/policies/*.yaml), loaded through a config that
// includes it (a policy alone lacks the required model keys).
config::QuantConfig load_policy(const std::string& path);
// Runs `command` (stderr included) and parses the last JSON object it prints; throws with its output.
nlohmann::json run_python_json(const std::string& command, const std::string& script);

CLI::App* add_train_command(CLI::App& cli, TrainBenchOptions& options);
int run_train_bench(const TrainBenchOptions& options);
// `prom-bench train --qat` (bench_qat.cpp).
int run_qat_bench(const TrainBenchOptions& options);

}  // namespace prom::bench
