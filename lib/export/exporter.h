// From a QAT model (fake quantizers attached by lib/quant) to the integer model the engine runs:
// BatchNorm folded into per-channel int32 biases and fixed-point multipliers, ternary and int8
// weight codes, activation scales. The fake-quant forward in eval mode and the integer engine then
// compute the same function up to rounding of biases and multipliers.
#pragma once
#include "export/int_model.h"

namespace prom::exporter {

struct ExportOptions {
  std::string ternary_packing = "2bit";  // 2bit | base3
  std::vector<std::string> classes;
  int64_t input_size = 224;
  Preprocess preprocess;
};

// Residual adds compute out = round((a * mult_a + b * mult_b) / 2^add_shift) in int64.
constexpr int kMaxAddShift = 30;

// Throws prom::Error when a layer is not fully quantized (int8/ternary weights and int8 inputs).
IntModel export_model(model::ClassifierModel& model, const ExportOptions& options);

}  // namespace prom::exporter
