// libFuzzer target: the exported-model reader (lib/graph/int_model.h) on arbitrary bytes, and the
// integer engine on every model it accepts: a model that loads must also run (or be refused with a
// prom::Error), since prom-eval --model does exactly that with a user's file.
// A prom::Error is the expected outcome for a bad file; anything else is a finding.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "graph/int_model.h"
#include "infer/engine.h"

namespace {

// The reader bounds each dimension, not their product (a model may be large); running one that
// declares gigabytes of activations is a test of the machine, not of the code, so it is skipped.
constexpr int64_t kMaxActivationValues = int64_t{1} << 22;

bool small_enough_to_run(const prom::graph::IntModel& model) {
  int64_t total = 0;
  for (const auto& a : model.activations) total += a.channels * a.height * a.width;
  return total <= kMaxActivationValues;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool single_thread = (torch::set_num_threads(1), true);
  (void)single_thread;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    prom::graph::IntModel model = prom::graph::decode_int_model(bytes, "fuzz.prom");
    if (!small_enough_to_run(model)) return 0;
    const auto& in = model.activations[model.input];
    prom::infer::IntegerEngine engine(model);
    // A deterministic non-zero image: the input codes' full range, so the arithmetic is exercised.
    torch::Tensor codes = (torch::arange(in.channels * in.height * in.width, torch::kInt64) * 37 % 256 - 128)
                              .reshape({1, in.channels, in.height, in.width})
                              .to(torch::kInt16);
    engine.run(codes);
  } catch (const prom::Error&) {
  }
  return 0;
}
