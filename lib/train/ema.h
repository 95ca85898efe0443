// Exponential moving average of the weights (torchvision's --model-ema): a shadow model whose
// parameters and floating-point buffers follow the trained model as
//   shadow = decay * shadow + (1 - decay) * model
// every `every` iterations. The shadow is evaluated alongside the model and saved in checkpoints.
//
// Quantization-aware training: the fake quantizers' state is not a weight. Observer ranges and
// "initialized" flags (buffers of a quantizer module) describe the live activations: the shadow
// copies them from the model at every update instead of averaging them. Learned LSQ steps and
// scales (parameters of a quantizer) are averaged like the weights they scale -- but only once they
// hold real values: before the first QAT batch they are placeholders (ranges 0, steps 1), so the
// trainer calls sync_quantizers() after the first step, which copies the quantizers' whole state.
// (Averaging placeholders into the shadow left its ranges at ~39% of the live ones after 5,000
// steps at decay 0.9999, and EMA evaluation clipped heavily.)
#pragma once
#include <memory>

#include "model/layer.h"

namespace prom::train {

class ModelEma {
 public:
  // `shadow` must have the trained model's architecture; it starts as a copy of `model`.
  ModelEma(std::shared_ptr<model::ClassifierModel> shadow, const torch::nn::Module& model, double decay);

  void update(const torch::nn::Module& model);
  // Makes the shadow a copy of `model` (parameters and buffers), as at construction.
  void reset(const torch::nn::Module& model);
  // Copies the parameters and buffers of every fake quantizer of `model` into the shadow.
  void sync_quantizers(const torch::nn::Module& model);
  model::ClassifierModel& shadow() { return *shadow_; }
  std::shared_ptr<model::ClassifierModel> shadow_ptr() { return shadow_; }

 private:
  std::shared_ptr<model::ClassifierModel> shadow_;
  double decay_;
};

// Whether the tensor named `name` in `model` (a state-dict name) belongs to a fake quantizer (a
// model::TensorHook submodule).
bool is_quantizer_state(const torch::nn::Module& model, const std::string& name);

}  // namespace prom::train
