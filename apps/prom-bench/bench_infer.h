// `prom-bench infer`: latency (batch 1, or --batch N) at 224 x 224 of prom's integer engine on a PROM MobileNetV2
// 1.0 (1000 classes), against LibTorch fp32 eval of the same float architecture, torch.ao's int8
// mobilenet_v2 under the onednn and the qnnpack engines and the fp32 model as frozen TorchScript in
// Python (tcmalloc preloaded as in prom), in the same run on the same threads. Also the ternary layers'
// throughput (the reference kernel's additions per second spent in them), the time per layer role or
// per op, and --isa to time one kernel set.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace prom::bench {

struct InferBenchOptions {
  int threads = 0;  // intra-op threads for all three; 0 = one per available core
  int warmup = 5;
  int iters = 20;   // timed batch-1 forwards; the median is reported
  int64_t size = 224;
  int64_t batch = 1;    // images per forward (the engine runs them as one batch)
  int calibration = 3;  // train-mode forwards on random batches of 4 that set the observers
  std::string policy;   // default: configs/policies/prom.yaml
  std::string python = "/usr/bin/python3";
  std::string script;   // default: scripts/bench_infer_torchvision.py
  bool skip_torchvision = false;
  bool layers = false;  // print the engine's time per layer role
  bool ops = false;     // print the engine's time per op of the graph
  std::string isa = "best";  // the engine's kernels: best | portable | avx2 | avx512-vnni
  std::string ternary_kernel = "dot";  // ternary 1x1 layers: dot (products) | addsub (index lists)
  std::string dot_codes = "8bit";       // AVX-512 VNNI 1x1 dot products: 8bit (vpdpbusd) | 16bit (vpdpwssd)
  bool no_fuse = false;  // expand and depthwise layers one after the other, not block by block
  // Rounds of (engine, torch.ao's faster engine) timed one after the other; the ratio reported is
  // the median of the rounds' ratios, so that a machine whose speed drifts within minutes (a VM)
  // slows both sides of a round alike. Round 1 also times every other reference.
  int rounds = 1;
};

CLI::App* add_infer_command(CLI::App& cli, InferBenchOptions& options);
int run_infer_bench(const InferBenchOptions& options);

}  // namespace prom::bench
