// Float weights as safetensors with torchvision key names: how prom imports torchvision-pretrained
// models (scripts/import_torchvision.py writes them) and how it shares float models.
#pragma once
#include <map>
#include <string>

#include "io/safetensors.h"

namespace prom::model {

// Parameters and buffers by state-dict name, contiguous on CPU (copies).
std::map<std::string, torch::Tensor> state_dict(const torch::nn::Module& module);

// Copies every tensor of `tensors` into the module. Strict: a missing or unexpected key or a shape
// mismatch is a prom::Error naming `origin` and the key.
void load_state_dict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::string& origin);

void save_weights(const torch::nn::Module& module, const std::string& path,
                  const std::map<std::string, std::string>& metadata = {});
void load_weights(torch::nn::Module& module, const std::string& path);

}  // namespace prom::model
