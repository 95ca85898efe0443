#include "bench_onnx.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "build_paths.h"
#include "core/error.h"
#include "io/atomic_file.h"
#ifdef PROM_WITH_ONNX
#include "onnx/onnx_export.h"
#endif

namespace prom::bench {
namespace {

// The runner's JSON line, or prom::Error with its one-line message.
nlohmann::json run_node(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) throw Error("cannot run node");
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  const int status = ::pclose(pipe);
  // The JSON line is the last line that starts with '{' (its objects nest: not the last '{').
  size_t start = out.rfind("\n{");
  start = start == std::string::npos ? (out.rfind('{', 0) == 0 ? 0 : std::string::npos) : start + 1;
  if (status == 0 && start != std::string::npos) return nlohmann::json::parse(out.substr(start));
  throw Error(out.empty() ? "node failed" : out.substr(0, out.find('\n')));
}

// Median ms of `iters` runs of prom's engine on a batch of `batch` images.
double engine_ms(infer::IntegerEngine& engine, int64_t batch, int iters) {
  const auto& in = engine.model().activations[engine.model().input];
  torch::Tensor codes = engine.quantize_input(torch::randn({batch, in.channels, in.height, in.width}));
  engine.run(codes);
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    engine.run(codes);
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

void report_onnx_runtime(infer::IntegerEngine& engine, const OnnxBenchSettings& s) {
#ifndef PROM_WITH_ONNX
  (void)engine;
  (void)s;
  std::printf("SKIPPED ONNX Runtime: prom was built without ONNX export (install libonnx-dev and rebuild)\n");
#else
  const char* env_dir = std::getenv("PROM_ONNXRUNTIME_DIR");
  const std::string ort_dir = env_dir ? env_dir : onnxruntime_dir();
  if (!std::filesystem::exists(ort_dir + "/node_modules/onnxruntime-node/package.json")) {
    std::printf("SKIPPED ONNX Runtime: no onnxruntime-node in %s (run scripts/onnx_runtime/install.sh %s, or set "
                "PROM_ONNXRUNTIME_DIR)\n", ort_dir.c_str(), ort_dir.c_str());
    return;
  }
  const graph::IntModel& m = engine.model();
  const auto& in = m.activations[m.input];
  const double engine32 = engine_ms(engine, 32, std::max(1, std::min(s.iters, 3)));
  const double engine1 = s.engine_batch1_ms >= 0 ? s.engine_batch1_ms : engine_ms(engine, 1, s.iters);
  std::printf("ONNX Runtime (node, CPU execution provider, all graph optimizations, %d thread(s)), QDQ export opset %lld; "
              "prom engine: batch 1 %.2f ms, batch 32 %.2f ms\n", s.threads,
              static_cast<long long>(onnx_export::kOpsetVersion), engine1, engine32);
  for (auto bias : {onnx_export::BiasFormat::kFloat, onnx_export::BiasFormat::kInt32}) {
    const char* form = bias == onnx_export::BiasFormat::kFloat ? "float32 biases (float Conv)" : "int32 biases (QLinearConv)";
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("prom-bench-" + std::to_string(::getpid()) + ".onnx")).string();
    onnx_export::write_onnx_file(onnx_export::encode_onnx_model(m, {bias}), path);
    nlohmann::json r;
    try {
      r = run_node("node " + scripts_dir() + "/onnx_runtime/run_model.js --ort-dir " + ort_dir +
                   " --model " + path + " --bench --batches 1,32 --shape " + std::to_string(in.channels) + "," +
                   std::to_string(in.height) + "," + std::to_string(in.width) + " --threads " + std::to_string(s.threads) +
                   " --warmup " + std::to_string(s.warmup) + " --iters " + std::to_string(s.iters));
    } catch (const std::exception& e) {
      std::remove(path.c_str());
      std::printf("SKIPPED ONNX Runtime: %s\n", e.what());
      return;
    }
    std::remove(path.c_str());
    const double ort1 = r["batch_ms"]["1"].get<double>(), ort32 = r["batch_ms"]["32"].get<double>();
    std::printf("  ORT %s, %-28s batch 1 %8.2f ms (engine / ORT %.2f), batch 32 %8.2f ms = %.2f ms per image "
                "(engine / ORT %.2f)\n", r.value("ort_version", "?").c_str(), form, ort1, engine1 / ort1,
                ort32, ort32 / 32, engine32 / ort32);
  }
#endif
}

}  // namespace prom::bench
