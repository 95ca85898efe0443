// Models by name. Adding an architecture (MobileNetV3, EfficientNet-B0, ...) means adding one entry
// to the table in registry.cpp; the trainer, evaluator and summary only see ClassifierModel.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "model/layer.h"

namespace prom::model {

// Builds the model the config names; throws ConfigError for an unknown architecture.
std::shared_ptr<ClassifierModel> create_model(const config::ModelConfig& config);

std::vector<std::string> model_names();

// Converts 4-d parameters and buffers to channels_last (NHWC) in place.
void to_channels_last(torch::nn::Module& module);

}  // namespace prom::model
