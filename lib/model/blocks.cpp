#include "model/blocks.h"

namespace prom::model {

torch::Tensor ActivationLayerImpl::forward(torch::Tensor x) {
  // In place where autograd allows it (ReLU's backward reads its output) or where no graph is
  // recorded; out of place otherwise (hardswish and SiLU backwards read their input).
  const bool recording = torch::GradMode::is_enabled() && x.requires_grad();
  switch (kind_) {
    case Activation::kNone: return x;
    case Activation::kRelu: return x.relu_();
    case Activation::kHardswish: return recording ? torch::hardswish(x) : torch::hardswish_(x);
    case Activation::kSilu: return recording ? torch::silu(x) : torch::silu_(x);
    default: return apply_activation(kind_, x);
  }
}

SqueezeExcitationImpl::SqueezeExcitationImpl(HookedConv2d fc1_, HookedConv2d fc2_, Activation activation,
                                             Activation gate)
    : fc1(register_module("fc1", fc1_)), fc2(register_module("fc2", fc2_)), activation_(activation), gate_(gate) {}

torch::Tensor SqueezeExcitationImpl::forward(torch::Tensor x) {
  torch::Tensor scale = torch::adaptive_avg_pool2d(x, {1, 1});
  scale = apply_activation(gate_, fc2->forward(apply_activation(activation_, fc1->forward(scale))));
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
