#include "app/app.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <iostream>
#include <sstream>

#include "core/build_info.h"
#include "core/channels_last_check.h"
#include "core/error.h"
#include "core/thread_defaults.h"
#include "distributed/backend.h"
#include "train/device.h"
#ifdef PROM_WITH_DATA
#include "data/opencv_info.h"
#endif

namespace prom::app {
namespace {

// One line: newlines inside a message (LibTorch's are multi-line) become "; ".
std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  std::string out;
  for (char c : s) {
    if (c == '\n') out += "; ";
    else out += c;
  }
  return out;
}

// The file named in front of ConfigKeyError messages (see note_config_source).
std::string& config_source() {
  static std::string source;
  return source;
}

}  // namespace

void note_config_source(const std::string& source) { config_source() = source; }

void print_error(const std::string& prog, const std::string& message) {
  std::cerr << prog << ": error: " << one_line(message) << std::endl;
}

namespace {
std::string channels_last_status() {
  const ChannelsLastCheck check = check_channels_last_convolutions();
  return check.ok ? "channels_last agrees with NCHW (known-answer check)" : describe_channels_last_failure(check);
}
}  // namespace

std::string version_text(const std::string& prog) {
  BuildInfo b = build_info();
  std::ostringstream out;
  out << prog << " " << b.prom_version << "\n"
      << "  LibTorch:  " << b.torch_version << "\n"
      << "  CUDA:      " << (b.cuda_available ? "available" : "not available") << ", " << b.cuda_device_count
      << " device(s)\n"
#ifdef PROM_WITH_DATA
      << "  OpenCV:    " << data::opencv_info() << "\n"
#else
      << "  OpenCV:    not built (PROM_WITH_DATA=OFF)\n"
#endif
      << "  threads:   " << b.threads << " intra-op, " << b.interop_threads << " inter-op ("
      << available_cores() << " cores available)\n"
      << "  defaults:  " << choose_threads(0, 0, available_cores()).why << " (for run.threads: 0, data.workers: 0)\n"
      << "  NHWC conv: " << channels_last_status() << "\n"
      << "  NCCL:      " << dist::nccl_version_text() << "\n"
      << "  BLAS:      " << b.blas << "\n"
      << "  allocator: " << b.allocator << "\n";
  return out.str();
}

void add_config_flags(CLI::App& app, ConfigFlags& flags, bool config_required) {
  auto* opt = app.add_option("-c,--config", flags.config_path, "YAML config file");
  if (config_required) opt->required();
  app.add_option("--set", flags.overrides, "override a config key, e.g. --set optim.lr=0.1 (repeatable)")
      ->take_last()
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->type_name("KEY=VALUE");
  app.add_flag("--print-config", flags.print_config, "print the fully resolved config and exit");
  app.add_option("--threads", flags.threads, "intra-op threads (0: all cores; default: run.threads)")
      ->check(CLI::Range(0, 1024));
}

config::Config load_config(const ConfigFlags& flags) {
  if (flags.config_path.empty()) throw ConfigError("no config given: pass --config FILE");
  config::Config c = config::load_config(flags.config_path, flags.overrides);
  note_config_source(c.source);
  if (flags.threads >= 0) c.run.threads = flags.threads;
  apply_threads(c);
  check_memory_format(c);
  return c;
}

void check_memory_format(config::Config& config) {
  if (!config.model.channels_last) return;
  if (train::device_is_cuda(config.run.device)) return;  // cuDNN's
  const ChannelsLastCheck check = check_channels_last_convolutions();
  if (check.ok) return;
  spdlog::warn("{}", describe_channels_last_failure(check));
  config.model.channels_last = false;
}

std::string apply_threads(const config::Config& config) {
  const ThreadChoice choice = choose_threads(config.run.threads, config.data.workers, available_cores());
  set_threads(choice.compute);
  return "threads: " + choice.why;
}

int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  const std::string prog = app.get_name();
  bool show_version = false;
  app.add_flag("--version", show_version, "print versions, threads and BLAS, then exit");
  try {
    // --version wins over the other flags, as --help does: a binary with a required option
    // (prom-export --out) prints its version without it.
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]) == "--version") show_version = true;
    if (!show_version) app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    print_error(prog, std::string(e.what()) + " (see --help)");
    return kExitUsage;
  }
  try {
    if (show_version) {
      set_threads(choose_threads(0, 0, available_cores()).compute);
      std::cout << version_text(prog);
      return kExitOk;
    }
    return body();
  } catch (const ConfigKeyError& e) {
    print_error(prog, at_path(config_source(), e.what()));
    return kExitUsage;
  } catch (const ConfigError& e) {
    print_error(prog, e.what());
    return kExitUsage;
  } catch (const Error& e) {
    print_error(prog, e.what());
    return kExitRuntime;
  } catch (const c10::Error& e) {
    print_error(prog, e.what_without_backtrace());
    return kExitRuntime;
  } catch (const std::exception& e) {
    print_error(prog, e.what());
    return kExitRuntime;
  }
}

}  // namespace prom::app
