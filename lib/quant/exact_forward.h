// The exact fake-quant forward: in eval mode a quantized model computes, bit for bit, what its
// exported integer model computes. It walks the model's graph and executes each node with the
// integers of lower_layer (the same ones lowering writes to the .prom file): convolutions on integer
// codes (float32 where every sum is below 2^24, float64 above), then fixed-point requantization,
// residual adds, pooling and the classifier in lib/quant/arithmetic.h's arithmetic.
#pragma once
#include <torch/torch.h>

#include <utility>
#include <vector>

#include "model/layer.h"
#include "quant/int_layer.h"
#include "quant/int_tensor_ops.h"

namespace prom::quant {

// Set on a model by apply_policy (quant.eval_forward: exact). Holds the model by reference: the
// model owns this hook.
class ExactForwardImpl : public model::ExactForwardHook {
 public:
  // `in_training`: also replace the training logits' values once BatchNorm and observers are frozen
  // (quant.train_forward: exact_when_frozen). `multiplier_bits`: requant_multiplier_bits (quant.requant).
  // `in_eval` false (quant.eval_forward: simulated): eval runs the simulated forward.
  ExactForwardImpl(model::ClassifierModel& model, bool in_training, int multiplier_bits = 31, bool in_eval = true)
      : model_(model), in_training_(in_training), in_eval_(in_eval), multiplier_bits_(multiplier_bits) {}
  // Logits [N, classes] as the integer engine dequantizes them; undefined while a quantizer has not
  // seen data yet, or with `in_eval` false (the model's simulated forward runs instead).
  torch::Tensor eval_forward(const torch::Tensor& x) override;
  // The integer logits whatever `in_eval` says (undefined while a quantizer has not seen data).
  torch::Tensor exact_logits(const torch::Tensor& x);
  // The exact logits with the gradients of `simulated` when every BatchNorm uses running statistics
  // and no observer moves (the state the exported model is made from); `simulated` otherwise.
  torch::Tensor train_forward(const torch::Tensor& x, const torch::Tensor& simulated) override;
  // Short requantization multipliers: their gains for the simulated forward (quant/requant_gains.h).
  void before_simulated_forward() override;
  // True when the model is in that state.
  bool frozen() const;

  // Keep the codes of every graph tensor of the next forwards (tests compare them with the engine's).
  void set_recording(bool on) { recording_ = on; }
  const std::vector<torch::Tensor>& recorded_codes() const { return recorded_; }
  // The integer layers of the current state (re-lowered when a parameter or buffer changed).
  const std::vector<IntLayer>& lowered_layers();

 private:
  struct Lowered {
    std::vector<IntLayer> layers;            // per graph node (empty for add/pool)
    std::vector<IntAdd> adds;                // per graph node (used for add nodes)
    std::vector<IntMul> muls;                // per graph node (used for squeeze-and-excitation scaling)
    std::vector<torch::Tensor> tables;       // per graph node: activation table on the device (float32)
    std::vector<torch::Tensor> weights;      // per graph node: float codes on the model's device
    std::vector<double> scales;              // per tensor: step (1 for the logits)
  };
  const Lowered& lowered(const torch::Device& device);
  std::vector<std::pair<const void*, int64_t>> state_key() const;
  torch::Tensor run_conv(size_t node_index, const model::GraphNode& node, const torch::Tensor& in,
                         const Lowered& low) const;
  torch::Tensor run_linear(size_t node_index, const torch::Tensor& in, const Lowered& low) const;

  model::ClassifierModel& model_;
  bool in_training_, in_eval_;
  int multiplier_bits_;
  Lowered lowered_;
  std::vector<std::pair<const void*, int64_t>> lowered_key_;
  torch::Device lowered_device_{torch::kCPU};
  bool recording_ = false;
  std::vector<torch::Tensor> recorded_;
};

// True when every tensor the graph reads is quantized and every layer has quantized weights: only
// then has the model an integer counterpart.
bool fully_quantized(model::ClassifierModel& model);

}  // namespace prom::quant
