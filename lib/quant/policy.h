// Applies a YAML quantization policy (config::QuantConfig) to a model: resolves which rule each layer
// gets, attaches the fake quantizers, and freezes BN statistics and observers at the chosen epochs.
#pragma once
#include <string>
#include <vector>

#include "config/quant_config.h"
#include "model/layer.h"

namespace prom::quant {

struct LayerAssignment {
  std::string layer;
  model::LayerRole role;
  int rule = -1;  // index of the matching rule, -1: none (stays float)
  config::WeightQuantConfig weight;
  config::ActQuantConfig input;
  bool input_unsigned = false;
  bool residual_quant = false;  // the branch output is quantized before the residual add
};

// Which rule each layer gets (first match wins). Throws ConfigError for a rule that matches nothing.
std::vector<LayerAssignment> resolve_policy(const config::QuantConfig& config, const model::ClassifierModel& model);

// Attaches fake quantizers to `model` as the policy says; returns the assignments.
std::vector<LayerAssignment> apply_policy(model::ClassifierModel& model, const config::QuantConfig& config);

// apply_policy, then moves the new quantizer state to `device`.
std::vector<LayerAssignment> attach_quantizers(model::ClassifierModel& model, const config::QuantConfig& config,
                                               const torch::Device& device);

// The table printed and saved by every QAT run.
std::string format_policy(const std::vector<LayerAssignment>& assignments);

// Call at the start of each epoch (0-based): freezes BN statistics and activation observers once
// their epoch has come (torchvision's int8 QAT recipe: BN after 3 epochs, observers after 4).
void on_epoch_start(model::ClassifierModel& model, const config::QuantConfig& config, int epoch);
// BN modules in eval mode when frozen: call after model.train() at each epoch start.
void apply_bn_freeze(model::ClassifierModel& model, const config::QuantConfig& config, int epoch);

}  // namespace prom::quant
