#include "model/blocks.h"

namespace prom::model {

SqueezeExcitationImpl::SqueezeExcitationImpl(HookedConv2d fc1_, HookedConv2d fc2_, ActivationLayer activation_,
                                             ActivationLayer gate)
    : fc1(register_module("fc1", fc1_)),
      fc2(register_module("fc2", fc2_)),
      activation(register_module("activation", activation_)),
      scale_activation(register_module("scale_activation", gate)) {}

void SqueezeExcitationImpl::set_hook(Hook which, std::shared_ptr<TensorHook> hook) {
  const char* name = which == Hook::kInput ? "input_quant" : which == Hook::kPooled ? "pooled_quant" : "gate_quant";
  auto& slot = which == Hook::kInput ? input_hook_ : which == Hook::kPooled ? pooled_hook_ : gate_hook_;
  slot = hook ? register_module(name, hook) : nullptr;
}

std::shared_ptr<TensorHook> SqueezeExcitationImpl::hook(Hook which) const {
  return which == Hook::kInput ? input_hook_ : which == Hook::kPooled ? pooled_hook_ : gate_hook_;
}

torch::Tensor SqueezeExcitationImpl::forward(torch::Tensor x) {
  if (input_hook_) x = input_hook_->forward(x);
  torch::Tensor scale = torch::adaptive_avg_pool2d(x, {1, 1});
  if (pooled_hook_) scale = pooled_hook_->forward(scale);
  scale = scale_activation->forward(fc2->forward(activation->forward(fc1->forward(scale))));
  if (gate_hook_) scale = gate_hook_->forward(scale);
  return x * scale;
}

InvertedResidualImpl::InvertedResidualImpl(const std::string& body_name, torch::nn::Sequential body_,
                                           HookedConv2d first_conv, bool use_residual, double stochastic_depth)
    : body(register_module(body_name, body_)),
      first_conv_(std::move(first_conv)),
      use_residual_(use_residual),
      stochastic_depth_(stochastic_depth) {
  // The block quantizes its input once, for the skip path and the first conv alike.
  if (use_residual_) first_conv_->input_prequantized = true;
}

void InvertedResidualImpl::set_residual_hook(std::shared_ptr<TensorHook> hook) {
  residual_hook_ = hook ? register_module("residual_quant", hook) : nullptr;
}

torch::Tensor InvertedResidualImpl::forward(torch::Tensor x) {
  if (!use_residual_) return body->forward(x);
  // Under quantization the skip path carries the quantized input (what the integer engine adds).
  if (first_conv_->input_hook) x = first_conv_->input_hook->forward(x);
  torch::Tensor branch = body->forward(x);
  if (residual_hook_) branch = residual_hook_->forward(branch);
  if (is_training() && stochastic_depth_ > 0.0) {
    // torchvision's stochastic_depth(mode="row"): keep a sample's branch with probability 1 - p,
    // scaled by 1 / (1 - p).
    const double survival = 1.0 - stochastic_depth_;
    torch::Tensor keep = torch::empty({branch.size(0), 1, 1, 1}, branch.options()).bernoulli_(survival);
    if (survival > 0.0) keep.div_(survival);
    branch = branch * keep;
  }
  return x + branch;
}

}  // namespace prom::model
