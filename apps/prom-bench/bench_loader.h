// `prom-bench loader`: images/s of the OpenCV pipeline (train and eval presets, 1 and 2 threads)
// against torchvision's ImageFolder + DataLoader (PIL) on the same photo-like JPEGs in the same run,
// against the bare cv::imdecode rate on those files, and against prom's own decoder alone (the
// libjpeg-turbo fast path), i.e. what the transforms and the loader cost on top of decoding.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace prom::bench {

struct LoaderBenchOptions {
  std::string dir;                      // where the JPEGs go ("" = a temporary directory, removed after)
  int images = 384;
  int width = 500, height = 375;        // ImageNet's most common size
  int quality = 90;
  int64_t batch_size = 32;
  std::vector<int> threads = {1, 2};
  std::string python = "/usr/bin/python3";  // Debian's, with python3-torchvision
  std::string script;                   // default: scripts/bench_torchvision_loader.py in the source tree
  bool skip_torchvision = false;
};

// Registers the `loader` subcommand on `cli`.
CLI::App* add_loader_command(CLI::App& cli, LoaderBenchOptions& options);

// Runs it; prints a table; returns the exit code.
int run_loader_bench(const LoaderBenchOptions& options);

}  // namespace prom::bench
