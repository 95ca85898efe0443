// Lowering: from a QAT model (fake quantizers attached by lib/quant) to the integer model the engine
// runs, by walking the model's graph (model::GraphNode): no network-specific code. Each layer's
// integers come from quant::lower_layer, the function the exact fake-quant forward executes, so the
// exported model computes bit for bit what the QAT model computes in eval mode.
#pragma once
#include <string>
#include <vector>

#include "graph/int_model.h"

namespace prom::lowering {

struct ExportOptions {
  std::string ternary_packing = "2bit";  // 2bit | base3
  std::vector<std::string> classes;
  int64_t input_size = 224;
  graph::Preprocess preprocess;
  // Significant bits of the requantization multipliers: quant::requant_multiplier_bits(config.quant),
  // the value the model's exact forward uses (31: fixed_point32).
  int multiplier_bits = 31;
};

// Throws prom::Error naming the layer when it is not fully quantized (int8/ternary weights, int8
// activations on every tensor) or its integers would overflow.
graph::IntModel lower_model(model::ClassifierModel& model, const ExportOptions& options);

}  // namespace prom::lowering
