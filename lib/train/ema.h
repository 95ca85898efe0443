// Exponential moving average of the weights (torchvision's --model-ema): a shadow model whose
// parameters and floating-point buffers follow the trained model as
//   shadow = decay * shadow + (1 - decay) * model
// every `every` iterations. The shadow is evaluated alongside the model and saved in checkpoints.
#pragma once
#include <memory>

#include "model/layer.h"

namespace prom::train {

class ModelEma {
 public:
  // `shadow` must have the trained model's architecture; it starts as a copy of `model`.
  ModelEma(std::shared_ptr<model::ClassifierModel> shadow, const torch::nn::Module& model, double decay);

  void update(const torch::nn::Module& model);
  model::ClassifierModel& shadow() { return *shadow_; }
  std::shared_ptr<model::ClassifierModel> shadow_ptr() { return shadow_; }

 private:
  std::shared_ptr<model::ClassifierModel> shadow_;
  double decay_;
};

}  // namespace prom::train
