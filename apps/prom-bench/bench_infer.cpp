#include "bench_infer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "bench_onnx.h"
#include "bench_train.h"
#include "build_paths.h"
#include "config/config.h"
#include "core/build_info.h"
#include "core/error.h"
#include "lowering/lower.h"
#include "infer/engine.h"
#include "model/registry.h"
#include "quant/int_layer.h"
#include "quant/policy.h"

namespace prom::bench {
namespace {

using Clock = std::chrono::steady_clock;

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double median_ms(int warmup, int iters, const F& f) {
  std::vector<double> t;
  for (int i = 0; i < warmup + iters; ++i) {
    auto t0 = Clock::now();
    f();
    auto t1 = Clock::now();
    if (i >= warmup) t.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return median_of(t);
}

config::ModelConfig model_config(const InferBenchOptions& o) {
  config::ModelConfig mc;
  mc.num_classes = 1000;
  mc.width_mult = 1.0;
  (void)o;
  return mc;
}

// Engine options that select the kernels named by --isa; a CPU without them is an error.
infer::EngineOptions engine_options(const std::string& isa, const std::string& ternary_kernel,
                                    const std::string& dot_codes, bool fuse) {
  using infer::kernels::Isa;
  infer::EngineOptions eo;
  eo.ternary_dot = ternary_kernel == "dot";
  eo.byte_dot = dot_codes == "8bit";
  eo.fuse_expand_depthwise = fuse;
  if (isa == "best") return eo;
  const Isa want = isa == "portable" ? Isa::kPortable : isa == "avx2" ? Isa::kAvx2 : Isa::kAvx512Vnni;
  if (static_cast<int>(want) > static_cast<int>(infer::kernels::best_isa()))
    throw ConfigError("--isa " + isa + ": this CPU runs at most " + infer::kernels::isa_name(infer::kernels::best_isa()));
  eo.allow_avx2 = want != Isa::kPortable;
  eo.allow_avx512 = want == Isa::kAvx512Vnni;
  return eo;
}

}  // namespace

CLI::App* add_infer_command(CLI::App& cli, InferBenchOptions& o) {
  auto* c = cli.add_subcommand(
      "infer", "latency per batch: integer engine vs LibTorch fp32 vs torch.ao int8 (onednn and qnnpack engines)");
  c->add_option("--threads", o.threads, "intra-op threads for all three (0: one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  c->add_option("--warmup", o.warmup, "untimed runs first")->capture_default_str()->check(CLI::Range(0, 1000));
  c->add_option("--iters", o.iters, "timed runs (median reported)")->capture_default_str()->check(CLI::Range(1, 10000));
  c->add_option("--size", o.size, "input height and width")->capture_default_str()->check(CLI::Range(32, 1024));
  c->add_option("--batch", o.batch, "images per forward, on every side")->capture_default_str()->check(CLI::Range(1, 1024));
  c->add_option("--calibration", o.calibration, "train-mode forwards on random data before export")
      ->capture_default_str()->check(CLI::Range(1, 100));
  c->add_option("--policy", o.policy, "quantization policy (default: configs/policies/prom.yaml)");
  c->add_option("--python", o.python, "Python with torch and torchvision")->capture_default_str();
  c->add_option("--script", o.script, "torch.ao's side (default: scripts/bench_infer_torchvision.py)");
  c->add_flag("--skip-torchvision", o.skip_torchvision, "measure prom only");
  c->add_flag("--layers", o.layers, "print the engine's time per layer role");
  c->add_flag("--ops", o.ops, "print the engine's time per op of the graph");
  c->add_option("--isa", o.isa, "the engine's kernels: best (the fastest this CPU runs), portable, avx2, avx512-vnni")
      ->capture_default_str()
      ->check(CLI::IsMember({"best", "portable", "avx2", "avx512-vnni"}));
  c->add_option("--ternary-kernel", o.ternary_kernel,
                "ternary 1x1 layers: dot (dense dot products of the codes) or addsub (additions over index lists)")
      ->capture_default_str()
      ->check(CLI::IsMember({"dot", "addsub"}));
  c->add_option("--dot-codes", o.dot_codes,
                "1x1 dot products on AVX-512 VNNI: 8bit (vpdpbusd on byte codes) or 16bit (vpdpwssd on int16 pairs)")
      ->capture_default_str()
      ->check(CLI::IsMember({"8bit", "16bit"}));
  c->add_option("--rounds", o.rounds,
                "rounds of prom's engine and torch.ao's faster int8 engine timed in turn; the ratio is the median of "
                "the rounds' ratios (round 1 also times the other references)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  c->add_flag("--no-fuse", o.no_fuse,
              "run each expanding 1x1 layer and the depthwise layer after it one after the other (default: "
              "together, block of channels by block, on the 8-bit path)");
  return c;
}

int run_infer_bench(const InferBenchOptions& options) {
  InferBenchOptions o = options;
  if (o.policy.empty()) o.policy = source_dir() + "/configs/policies/prom.yaml";
  if (o.script.empty()) o.script = scripts_dir() + "/bench_infer_torchvision.py";
  const config::QuantConfig quant = load_policy(o.policy);
  if (!quant.enabled) throw ConfigError(o.policy + ": quant.enabled is false: nothing to export");
  set_threads(o.threads);
  const int threads = build_info().threads;
  torch::NoGradGuard no_grad;

  // (a) the integer engine on an exported PROM model (random weights, observers set on random data).
  torch::manual_seed(0);
  auto qat = model::create_model(model_config(o));
  quant::apply_policy(*qat, quant);
  qat->train();
  for (int i = 0; i < o.calibration; ++i) qat->forward(torch::randn({4, 3, o.size, o.size}));
  qat->eval();
  lowering::ExportOptions eo;
  eo.input_size = o.size;
  eo.preprocess = {o.size, o.size, {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}};
  eo.multiplier_bits = quant::requant_multiplier_bits(quant);
  infer::IntegerEngine engine(lowering::lower_model(*qat, eo), engine_options(o.isa, o.ternary_kernel, o.dot_codes, !o.no_fuse));
  torch::Tensor codes = engine.quantize_input(torch::randn({o.batch, 3, o.size, o.size}));
  for (int i = 0; i < o.warmup; ++i) engine.run(codes);
  engine.reset_counts();
  const double engine_ms = median_ms(0, o.iters, [&] { engine.run(codes); });

  // (b) LibTorch fp32 eval of the same float architecture.
  torch::manual_seed(0);
  auto fp = model::create_model(model_config(o));
  model::to_channels_last(*fp);
  fp->eval();
  torch::Tensor x = torch::randn({o.batch, 3, o.size, o.size}).contiguous(torch::MemoryFormat::ChannelsLast);
  const double torch_ms = median_ms(o.warmup, o.iters, [&] { fp->forward(x); });

  // (c) torch.ao int8 under the onednn and the qnnpack engines (null: not in that torch).
  nlohmann::json ao;
  const std::string cmd = o.python + " " + o.script + " --size " + std::to_string(o.size) + " --threads " +
                          std::to_string(threads) + " --warmup " + std::to_string(o.warmup) + " --iters " +
                          std::to_string(o.iters) + " --batch " + std::to_string(o.batch);
  if (!o.skip_torchvision) ao = run_python_json(cmd, o.script);

  // (d) later rounds: the engine and torch.ao's faster engine again, one after the other (the
  // per-op figures below stay round 1's).
  const std::vector<infer::LayerCounts> counts = engine.counts();
  const std::vector<double> secs = engine.op_seconds();
  std::vector<std::pair<double, double>> rounds;  // (engine ms, torch.ao ms) per round
  if (ao.contains("ms")) rounds.emplace_back(engine_ms, ao["ms"].get<double>());
  for (int r = 1; r < o.rounds && !rounds.empty(); ++r) {
    const double e = median_ms(0, o.iters, [&] { engine.run(codes); });
    const nlohmann::json again = run_python_json(cmd + " --skip-torchscript --engines " + ao["engine"].get<std::string>(), o.script);
    rounds.emplace_back(e, again["ms"].get<double>());
  }

  // Ternary throughput and time per role from the engine's per-op timing.
  int64_t ternary_adds = 0;
  double ternary_s = 0, total_s = 0;
  std::map<std::string, double> by_role;
  for (size_t i = 0; i < counts.size(); ++i) {
    const auto& op = engine.model().ops[i];
    total_s += secs[i];
    std::string key = op.kind == graph::OpKind::kConv || op.kind == graph::OpKind::kLinear
                          ? std::string(model::role_name(op.role)) + (op.ternary ? " (ternary)" : " (int8)")
                          : graph::op_kind_name(op.kind);
    by_role[key] += secs[i];
    if (op.kind == graph::OpKind::kConv && op.ternary) {
      ternary_adds += counts[i].counts.ternary_adds;
      ternary_s += secs[i];
    }
  }

  std::printf("prom-bench infer: MobileNetV2 1.0, 1000 classes, batch %lld at %lldx%lld, %d thread(s), median of %d "
              "runs after %d warm-up (ms per batch)\n", static_cast<long long>(o.batch), static_cast<long long>(o.size),
              static_cast<long long>(o.size), threads, o.iters, o.warmup);
  const bool ternary_dot = o.ternary_kernel == "dot" && std::string(engine.kernel_name()) != "portable";
  std::printf("%-44s %10.2f ms  (%s kernels, 1x1: %s, ternary 1x1: %s)\n", "prom integer engine (PROM: ternary + int8)",
              engine_ms, engine.kernel_name(), engine.pointwise_kernel_name(), ternary_dot ? "dot products" : "additions");
  std::printf("%-44s %10.2f ms\n", "LibTorch fp32 eval (channels_last)", torch_ms);
  for (const char* engine : {"onednn", "qnnpack"}) {
    const std::string label = std::string("torch.ao int8, ") + engine + " engine (Python)";
    const std::string key = std::string(engine) + "_ms";
    if (ao.contains(key) && ao[key].is_number())
      std::printf("%-44s %10.2f ms  (%s input)\n", label.c_str(), ao[key].get<double>(),
                  ao.value(std::string(engine) + "_format", std::string("nchw")).c_str());
    else std::printf("%-44s %10s\n", label.c_str(), ao.is_null() ? "-" : "not in this torch");
  }
  if (ao.contains("torchscript_fp32_ms") && ao["torchscript_fp32_ms"].is_number())
    std::printf("%-44s %10.2f ms  (%s input)\n", "TorchScript fp32, frozen (Python)", ao["torchscript_fp32_ms"].get<double>(),
                ao.value("torchscript_fp32_format", std::string("nchw")).c_str());
  std::printf("ratio engine / LibTorch fp32: %.2f\n", engine_ms / torch_ms);
  if (rounds.size() > 1) {
    std::vector<double> ratios;
    for (size_t r = 0; r < rounds.size(); ++r) {
      ratios.push_back(rounds[r].first / rounds[r].second);
      std::printf("round %zu: prom %.2f ms, torch.ao %s %.2f ms, ratio %.2f\n", r + 1, rounds[r].first,
                  ao["engine"].get<std::string>().c_str(), rounds[r].second, ratios.back());
    }
    std::printf("ratio engine / torch.ao int8 (its faster engine, %s), median of %zu rounds: %.2f (lowest %.2f, highest "
                "%.2f; target: <= 1.0, %s)\n",
                ao["engine"].get<std::string>().c_str(), rounds.size(), median_of(ratios),
                *std::min_element(ratios.begin(), ratios.end()), *std::max_element(ratios.begin(), ratios.end()),
                o.batch == 1 ? "latency at batch 1" : "time per batch, i.e. throughput at least torch.ao's");
  } else if (ao.contains("ms")) {
    std::printf("ratio engine / torch.ao int8 (its faster engine, %s): %.2f (target: <= 1.0, %s)\n",
                ao["engine"].get<std::string>().c_str(), engine_ms / ao["ms"].get<double>(),
                o.batch == 1 ? "latency at batch 1" : "time per batch, i.e. throughput at least torch.ao's");
  }
  std::printf("ternary layers: %lld additions per image, %.1f%% of engine time, %.2f G additions/s\n",
              static_cast<long long>(ternary_adds / (o.iters * o.batch)), 100.0 * ternary_s / total_s,
              ternary_s > 0 ? ternary_adds / ternary_s / 1e9 : 0.0);
  if (o.layers)
    for (const auto& [role, s] : by_role)
      std::printf("  %-32s %8.2f ms per image (%4.1f%%)\n", role.c_str(), 1000.0 * s / (o.iters * o.batch),
                  100.0 * s / total_s);
  if (o.ops)
    for (size_t i = 0; i < counts.size(); ++i) {
      const auto& op = engine.model().ops[i];
      const auto& out = engine.model().activations[op.output];
      std::printf("  %-28s %-8s %5lld -> %5lld at %4lldx%-4lld k%lld s%lld %8.3f ms per image\n", counts[i].name.c_str(),
                  graph::op_kind_name(op.kind), static_cast<long long>(op.in_channels),
                  static_cast<long long>(op.out_channels), static_cast<long long>(out.height),
                  static_cast<long long>(out.width), static_cast<long long>(op.kernel), static_cast<long long>(op.stride),
                  1000.0 * secs[i] / (o.iters * o.batch));
    }
  report_onnx_runtime(engine, {threads, o.warmup, o.iters, o.batch == 1 ? engine_ms : -1.0});  // bench_onnx.cpp
  return 0;
}

}  // namespace prom::bench
