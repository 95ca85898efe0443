// What every prom binary shares: --version, --config/--set/--print-config, thread setup, and the
// top-level error handling that turns any failure into one line on stderr and an exit code
// (2: usage or config error, 1: runtime failure).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "config/config.h"

namespace prom::app {

struct ConfigFlags {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key=value, repeatable
  bool print_config = false;
  int threads = -1;                    // -1: from the config
};

// Multi-line version report: prom, LibTorch, CUDA, OpenCV, threads, BLAS, allocator.
std::string version_text(const std::string& prog);

// Adds --config, --set, --print-config and --threads.
void add_config_flags(CLI::App& app, ConfigFlags& flags, bool config_required);

// Loads the config named by the flags and sets LibTorch's thread count from it (apply_threads).
config::Config load_config(const ConfigFlags& flags);

// Sets LibTorch's intra-op threads from run.threads; 0 shares the cores among the ranks a launcher
// started on this node, or follows OMP_NUM_THREADS (core/thread_defaults.h). Returns the one
// line that says what was chosen and why, compute and decode threads: "threads: 8 compute (...), ...".
std::string apply_threads(const config::Config& config);

// On the CPU, before model.channels_last is used: runs LibTorch's channels_last convolutions against
// NCHW (core/channels_last_check.h) and, where they disagree, warns in one line and turns
// model.channels_last off for this run. load_config calls it.
void check_memory_format(config::Config& config);

// Remembers the file the process's config came from (a YAML file, a run's config.yaml or a
// checkpoint's embedded config): run() names it in front of a ConfigKeyError. load_config calls it.
void note_config_source(const std::string& source);

// Parses argv (adding --version), runs `body`, maps exceptions to one-line errors and exit codes.
int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

// Prints "prog: error: message" as one line on stderr.
void print_error(const std::string& prog, const std::string& message);

}  // namespace prom::app
