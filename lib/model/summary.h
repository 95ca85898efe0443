// Per-layer summary: shapes, parameters and multiply-accumulates at a given input size.
#pragma once
#include <string>
#include <vector>

#include "model/layer.h"

namespace prom::model {

struct LayerSummary {
  std::string name;
  LayerRole role;
  std::vector<int64_t> weight_shape;
  int64_t out_h = 1, out_w = 1;
  int64_t params = 0;  // weight, bias and the following BatchNorm's affine parameters
  int64_t macs = 0;    // multiply-accumulates for one image
};

struct ModelSummary {
  std::vector<LayerSummary> layers;
  int64_t total_params = 0;
  int64_t total_macs = 0;
};

// Walks the dataflow graph, computing spatial sizes analytically; one row per layer, in layer order.
// MACs are the convolutions' and linear layers' multiply-accumulates (as torchvision-based counters
// count them); elementwise work (activations, residual adds, SE scaling, pooling) is not in them.
ModelSummary summarize(const ClassifierModel& model, int64_t input_size);

// A fixed-width table with totals, for `prom-eval --describe`.
std::string format_summary(const ModelSummary& summary, const std::string& title);

}  // namespace prom::model
