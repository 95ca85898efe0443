#include "bench_loader.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "build_paths.h"
#include "config/config.h"
#include "core/error.h"
#include "data/decode.h"
#include "data/image_source.h"
#include "data/photo_like.h"
#include "python_ref.h"

namespace prom::bench {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// DIR/train/class_<k>/<i>.JPEG; returns the paths (reuses files already there).
std::vector<std::string> make_images(const std::string& dir, const LoaderBenchOptions& o, double* mean_kb) {
  std::vector<std::string> paths;
  double bytes = 0;
  for (int i = 0; i < o.images; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "train/class_%d/%05d.JPEG", i % 4, i);
    std::string path = (fs::path(dir) / name).string();
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      auto jpeg = data::encode_image(data::photo_like_image(o.width, o.height, static_cast<uint64_t>(i)), ".jpg",
                                     o.quality);
      fs::create_directories(fs::path(path).parent_path());
      std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(jpeg.data()),
                                                  static_cast<std::streamsize>(jpeg.size()));
    }
    bytes += static_cast<double>(fs::file_size(path));
    paths.push_back(path);
  }
  *mean_kb = bytes / o.images / 1000.0;
  return paths;
}

// The machine may be shared with other work, so every measurement reports two rates, each the best
// of a few timed passes after a warm-up pass:
//   wall: images per second of elapsed time (what the targets name);
//   cpu:  images per CPU-second of the whole process (workers and main thread; for torchvision the
//         main process and its worker processes), times the thread count: the images/s the same
//         threads would reach on otherwise idle cores. Contention from other jobs inflates wall time
//         but hardly CPU time, so the cpu ratios are the stable ones on a busy machine.
constexpr int kTimedEpochs = 5;

struct Rate {
  double wall = 0, cpu = 0;
  void keep_best(const Rate& r) {
    wall = std::max(wall, r.wall);
    cpu = std::max(cpu, r.cpu);
  }
};

double process_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Times `pass` (which handles `images` images) on `threads` threads.
template <class F>
Rate measure(int64_t images, int threads, F&& pass) {
  auto t0 = Clock::now();
  const double c0 = process_cpu_seconds();
  pass();
  const double wall = seconds_since(t0), cpu = process_cpu_seconds() - c0;
  return {static_cast<double>(images) / wall, static_cast<double>(images) * threads / std::max(cpu, 1e-9)};
}

// Decoding alone on `threads` threads, files already in memory: cv::imdecode (the baseline)
// or prom's own decoder (decode.h: the libjpeg-turbo fast path for JPEG), the ceiling for the loader.
Rate decode_rate(const std::vector<std::vector<uchar>>& files, int threads, bool prom_decoder) {
  cv::setNumThreads(0);
  Rate best;
  for (int rep = 0; rep < kTimedEpochs; ++rep) {
    std::atomic<int> failed{0};
    best.keep_best(measure(static_cast<int64_t>(files.size()), threads, [&] {
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          for (size_t i = t; i < files.size(); i += threads)
            if ((prom_decoder ? data::decode_image(files[i], "memory") : cv::imdecode(files[i], cv::IMREAD_COLOR))
                    .empty())
              ++failed;
        });
      for (auto& th : pool) th.join();
    }));
    if (failed > 0) throw Error("decoding failed on " + std::to_string(failed.load()) + " generated images");
  }
  return best;
}

Rate prom_rate(const std::string& dir, bool train, int threads, int64_t batch) {
  config::Config c;
  c.data.root = dir;
  c.data.train_dir = "train";
  c.data.val_dir = "train";
  c.data.workers = threads;
  data::ImageSourceOptions o;
  o.split = train ? data::Split::kTrain : data::Split::kEval;
  o.batch_size = batch;
  auto source = data::make_image_source(c, o);
  Rate best;
  for (int64_t epoch = 0; epoch <= kTimedEpochs; ++epoch) {  // epoch 0 warms up, as the Python side does
    Rate r = measure(source->size(), threads, [&] {
      source->start_epoch(epoch);
      while (auto b = source->next()) {
      }
    });
    if (epoch > 0) best.keep_best(r);
  }
  return best;
}

Rate torchvision_rate(const LoaderBenchOptions& o, const std::string& dir, bool train, int threads) {
  note_python_allocator();  // python_ref.h: the Python side runs with prom's allocator
  std::string cmd = python_allocator_env() + o.python + " " + o.script + " --dir " + dir + "/train --preset " +
                    (train ? "train" : "eval") +
                    " --workers " + std::to_string(threads) + " --batch-size " + std::to_string(o.batch_size) +
                    " --epochs " + std::to_string(kTimedEpochs) + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) throw Error("cannot run " + cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  int status = ::pclose(pipe);
  auto line = out.substr(out.rfind('{') == std::string::npos ? 0 : out.rfind('{'));
  try {
    if (status == 0) {
      auto j = nlohmann::json::parse(line);
      return {j.at("images_per_s").get<double>(), j.at("images_per_cpu_s").get<double>() * threads};
    }
  } catch (const nlohmann::json::exception&) {
  }
  throw Error(o.script + ": torchvision benchmark failed: " + out.substr(0, 300));
}

std::string fmt(double v, const char* f = "%.0f") {
  char b[32];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace

CLI::App* add_loader_command(CLI::App& cli, LoaderBenchOptions& o) {
  auto* c = cli.add_subcommand("loader", "data loader images/s: prom (OpenCV) vs torchvision (PIL) vs bare imdecode");
  c->add_option("--dir", o.dir, "folder for the generated JPEGs (kept; default: a temporary folder)");
  c->add_option("--images", o.images, "number of images")->capture_default_str()->check(CLI::Range(8, 1000000));
  c->add_option("--batch-size", o.batch_size, "batch size")->capture_default_str()->check(CLI::Range(1, 4096));
  c->add_option("--threads", o.threads, "thread counts to measure")->capture_default_str();
  c->add_option("--python", o.python, "Python with torchvision")->capture_default_str();
  c->add_option("--script", o.script, "the torchvision side (default: scripts/bench_torchvision_loader.py)");
  c->add_flag("--skip-torchvision", o.skip_torchvision, "measure prom and imdecode only");
  return c;
}

int run_loader_bench(const LoaderBenchOptions& options) {
  LoaderBenchOptions o = options;
  if (o.script.empty()) o.script = scripts_dir() + "/bench_torchvision_loader.py";
  std::string dir = o.dir;
  const bool temporary = dir.empty();
  if (temporary) dir = (fs::temp_directory_path() / ("prom-bench-loader-" + std::to_string(::getpid()))).string();
  struct Cleanup {
    std::string dir;
    bool on;
    ~Cleanup() {
      std::error_code ec;
      if (on) fs::remove_all(dir, ec);
    }
  } cleanup{dir, temporary};
  double mean_kb = 0;
  auto t0 = Clock::now();
  auto paths = make_images(dir, o, &mean_kb);
  std::printf("loader benchmark: %d photo-like %dx%d JPEGs (quality %d, %.0f KB on average) in %s (%.1f s to make)\n",
              o.images, o.width, o.height, o.quality, mean_kb, dir.c_str(), seconds_since(t0));
  std::vector<std::vector<uchar>> files;
  for (const auto& p : paths) {
    std::ifstream in(p, std::ios::binary);
    files.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::printf("images/s as wall | cpu (see the note below)\n");
  std::printf("%-6s %7s %13s %16s %13s %13s %13s %13s %13s\n", "preset", "threads", "prom", "torchvision",
              "prom/tv", "cv::imdecode", "prom/imdec", "prom decode", "prom/decode");
  for (int threads : o.threads) {
    const Rate dec = decode_rate(files, threads, false), own = decode_rate(files, threads, true);
    for (bool train : {true, false}) {
      const Rate prom = prom_rate(dir, train, threads, o.batch_size);
      Rate tv;
      if (!o.skip_torchvision) tv = torchvision_rate(o, dir, train, threads);
      auto pair = [](double a, double b, const char* f) { return fmt(a, f) + " | " + fmt(b, f); };
      std::printf("%-6s %7d %13s %16s %13s %13s %13s %13s %13s\n", train ? "train" : "eval", threads,
                  pair(prom.wall, prom.cpu, "%.0f").c_str(),
                  o.skip_torchvision ? "-" : pair(tv.wall, tv.cpu, "%.0f").c_str(),
                  o.skip_torchvision ? "-" : pair(prom.wall / tv.wall, prom.cpu / tv.cpu, "%.2fx").c_str(),
                  pair(dec.wall, dec.cpu, "%.0f").c_str(),
                  pair(100 * prom.wall / dec.wall, 100 * prom.cpu / dec.cpu, "%.0f%%").c_str(),
                  pair(own.wall, own.cpu, "%.0f").c_str(),
                  pair(100 * prom.wall / own.wall, 100 * prom.cpu / own.cpu, "%.0f%%").c_str());
      std::fflush(stdout);
    }
  }
  std::printf("wall: elapsed-time rate; cpu: images per CPU-second x threads (the rate on idle cores).\n"
              "Each is the best of %d timed epochs after a warm-up; batch size %lld.\n",
              kTimedEpochs, static_cast<long long>(o.batch_size));
  return 0;
}

}  // namespace prom::bench
