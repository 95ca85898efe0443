// MobileNetV2 (Sandler et al. 2018) exactly as torchvision defines it, with torchvision's
// state-dict names (features.0.0.weight, features.1.conv.0.0.weight, classifier.1.weight, ...).
#pragma once
#include <map>

#include "model/layer.h"

namespace prom::model {

struct MobileNetV2Options {
  int64_t num_classes = 1000;
  double width_mult = 1.0;
  int round_nearest = 8;
  double dropout = 0.2;
  // Small inputs (28-64 px): the first N stride-2 stages (stem first) run at stride 1.
  int stride_one_stages = 0;
};

// torchvision's _make_divisible: round to a multiple of `divisor`, never more than 10% below v.
int64_t make_divisible(double v, int64_t divisor);

class MobileNetV2Impl : public ClassifierModel {
 public:
  explicit MobileNetV2Impl(const MobileNetV2Options& options);
  torch::Tensor forward(torch::Tensor x) override;
  const std::vector<LayerInfo>& layers() const override { return layers_; }
  std::string arch() const override { return "mobilenet_v2"; }
  void set_pool_hook(std::shared_ptr<TensorHook> hook) override;
  std::shared_ptr<TensorHook> pool_hook() const override { return pool_hook_; }
  const std::vector<GraphNode>& graph() const override { return graph_; }
  void set_branch_hook(int tensor, std::shared_ptr<TensorHook> hook) override;
  std::shared_ptr<TensorHook> branch_hook(int tensor) const override;

  torch::nn::Sequential features{nullptr};
  torch::nn::Sequential classifier{nullptr};

 private:
  // Appends one inverted residual block to `features` (its layers and graph nodes) reading `tensor`;
  // returns the tensor it writes.
  int add_inverted_residual(int tensor, int64_t in, int64_t out, int64_t expand, int64_t stride);
  // Appends a node reading `inputs`; returns the id of the tensor it writes.
  int add_node(NodeKind kind, int layer, std::vector<int> inputs, bool relu6);

  std::vector<LayerInfo> layers_;
  std::vector<GraphNode> graph_;
  std::map<int, class InvertedResidualImpl*> branch_blocks_;  // residual branch tensor -> its block (owned by features)
  std::shared_ptr<TensorHook> pool_hook_;
};

// Conv + BN + ReLU6 (torchvision's Conv2dNormActivation). A Sequential with a concrete forward(), so
// that it can sit inside another Sequential.
class ConvNormActImpl : public torch::nn::SequentialImpl {
 public:
  using SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(x); }
};
TORCH_MODULE(ConvNormAct);

// One inverted residual block: optional 1x1 expansion, 3x3 depthwise, 1x1 linear projection.
class InvertedResidualImpl : public torch::nn::Module {
 public:
  InvertedResidualImpl(torch::nn::Sequential conv, HookedConv2d first_conv, bool use_residual);
  torch::Tensor forward(torch::Tensor x);
  // Quantizes the branch output before the residual add (set by lib/quant on residual blocks).
  void set_residual_hook(std::shared_ptr<TensorHook> hook);
  std::shared_ptr<TensorHook> residual_hook() const { return residual_hook_; }
  bool use_residual() const { return use_residual_; }
  torch::nn::Sequential conv{nullptr};

 private:
  HookedConv2d first_conv_;  // its input hook also quantizes the skip path, as the integer engine does
  std::shared_ptr<TensorHook> residual_hook_;
  bool use_residual_;
};
TORCH_MODULE(InvertedResidual);

}  // namespace prom::model
