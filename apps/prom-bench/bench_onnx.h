// `prom-bench infer`, ONNX Runtime's side: the same exported model written as QDQ ONNX (lib/onnx)
// and timed in ONNX Runtime for Node.js (scripts/onnx_runtime/run_model.js, CPU execution provider,
// all graph optimizations, the same intra-op thread count) at batch 1 and 32, beside prom's engine.
// Prints a SKIPPED line with the reason where prom was built without ONNX or the runtime is missing.
#pragma once
#include "graph/int_model.h"
#include "infer/engine.h"

namespace prom::bench {

struct OnnxBenchSettings {
  int threads = 1, warmup = 5, iters = 20;
  double engine_batch1_ms = -1;  // prom's engine at batch 1, measured by the caller (< 0: measured here)
};

void report_onnx_runtime(infer::IntegerEngine& engine, const OnnxBenchSettings& settings);

}  // namespace prom::bench
