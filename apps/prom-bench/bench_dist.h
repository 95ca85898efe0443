// `prom-bench dist`: the data-parallel speed-up on this machine. One process trains at global batch
// B, then two processes (Gloo on 127.0.0.1) at B/2 each, the trainer's step with the bucketed
// gradient all-reduce (lib/distributed), synthetic data, --threads per process (1 by default). Reports
// ms per global step, the speed-up (1-process time / 2-process time) and the all-reduce time per
// step: the part the step waits for after backward, and the span from the first bucket's launch.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace prom::bench {

struct DistBenchOptions {
  int64_t batch = 64;       // global batch
  int64_t size = 32;        // input pixels (small_input MobileNetV2)
  double width_mult = 0.5;
  int64_t classes = 10;
  int threads = 1;          // intra-op threads per process
  int warmup = 3;
  int steps = 15;           // timed steps; medians are reported
  double bucket_mb = 25;
  bool overlap = true;
  bool json = false;
  // Internal: a worker process (rank and world from RANK/WORLD_SIZE), started by the benchmark.
  bool worker = false;
};

CLI::App* add_dist_command(CLI::App& cli, DistBenchOptions& options);
int run_dist_bench(const DistBenchOptions& options);

}  // namespace prom::bench
