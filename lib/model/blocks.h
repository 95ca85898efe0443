// The building blocks torchvision's depthwise-separable networks share: an activation module, conv +
// BatchNorm + activation, squeeze-and-excitation and the inverted residual block. Each keeps
// torchvision's submodule names, so state dicts match torchvision's.
#pragma once
#include <string>

#include "model/layer.h"

namespace prom::model {

// A Sequential with a concrete forward(), so that it can sit inside another Sequential: conv + BN +
// activation (torchvision's Conv2dNormActivation), MNASNet's stacks, EfficientNet's stages.
class SequenceImpl : public torch::nn::SequentialImpl {
 public:
  using SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(x); }
};
TORCH_MODULE(Sequence);

// torchvision's SqueezeExcitation: x * gate(fc2(act(fc1(avgpool(x))))), fc1 and fc2 1x1 convolutions
// with bias.
// Under quantization three hooks (lib/quant) sit on the tensors the integer engine holds: the input
// (quantized once for the pooling and the scaling), the pooled input (rounded back to the input's grid,
// as integer pooling does) and the gate.
class SqueezeExcitationImpl : public torch::nn::Module {
 public:
  SqueezeExcitationImpl(HookedConv2d fc1, HookedConv2d fc2, ActivationLayer activation, ActivationLayer gate);
  torch::Tensor forward(torch::Tensor x);
  enum class Hook { kInput, kPooled, kGate };
  void set_hook(Hook which, std::shared_ptr<TensorHook> hook);
  std::shared_ptr<TensorHook> hook(Hook which) const;
  HookedConv2d fc1{nullptr}, fc2{nullptr};
  ActivationLayer activation{nullptr}, scale_activation{nullptr};

 private:
  std::shared_ptr<TensorHook> input_hook_, pooled_hook_, gate_hook_;
};
TORCH_MODULE(SqueezeExcitation);

// An inverted residual block: its layers in one Sequential (named "conv" in MobileNetV2, "block" in
// MobileNetV3 and EfficientNet, "layers" in MNASNet), plus the skip connection where shapes allow.
class InvertedResidualImpl : public torch::nn::Module {
 public:
  // `first_conv`: the block's first convolution, whose input quantizer also quantizes the skip path.
  // `stochastic_depth`: probability of dropping the branch of a sample in training (EfficientNet's
  // StochasticDepth in "row" mode); 0 for the others.
  InvertedResidualImpl(const std::string& body_name, torch::nn::Sequential body, HookedConv2d first_conv,
                       bool use_residual, double stochastic_depth = 0.0);
  torch::Tensor forward(torch::Tensor x);
  // Quantizes the branch output before the residual add (set by lib/quant on residual blocks).
  void set_residual_hook(std::shared_ptr<TensorHook> hook);
  std::shared_ptr<TensorHook> residual_hook() const { return residual_hook_; }
  bool use_residual() const { return use_residual_; }
  double stochastic_depth() const { return stochastic_depth_; }
  torch::nn::Sequential body{nullptr};

 private:
  HookedConv2d first_conv_;
  std::shared_ptr<TensorHook> residual_hook_;
  bool use_residual_;
  double stochastic_depth_;
};
TORCH_MODULE(InvertedResidual);

}  // namespace prom::model
