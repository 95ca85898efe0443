// What every network in lib/model shares: the layer table, the dataflow graph over numbered tensors,
// the residual-branch and pooling hooks, the forward through body -> pooling -> head, and the builder
// steps that keep modules, layer table and graph in step. MobileNetV2, MobileNetV3, MNASNet and
// EfficientNet derive from it and only describe their topology.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "model/blocks.h"

namespace prom::model {

// One convolution as a builder step: conv (+ BatchNorm) (+ activation), torchvision's defaults.
struct ConvSpec {
  int64_t in = 0, out = 0, kernel = 1, stride = 1, groups = 1;
  LayerRole role = LayerRole::kPointwiseExpand;
  Activation activation = Activation::kNone;
  bool bias = false;        // SE convolutions have a bias and no BatchNorm
  bool batch_norm = true;
  double bn_eps = 1e-5, bn_momentum = 0.1;
};

// The modules of one ConvSpec and the graph tensor it writes.
struct ConvParts {
  HookedConv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::AnyModule act;  // empty without activation
  int output = -1;
  // Appends conv, BN and activation to `seq` one by one (MNASNet's flat layout).
  void append_to(torch::nn::Sequential& seq) const;
  // The three as one Conv2dNormActivation (MobileNets, EfficientNet).
  Sequence grouped() const;
};

class NetworkImpl : public ClassifierModel {
 public:
  torch::Tensor forward(torch::Tensor x) override;
  const std::vector<LayerInfo>& layers() const override { return layers_; }
  const std::vector<GraphNode>& graph() const override { return graph_; }
  void set_pool_hook(std::shared_ptr<TensorHook> hook) override;
  std::shared_ptr<TensorHook> pool_hook() const override { return pool_hook_; }
  void set_branch_hook(int tensor, std::shared_ptr<TensorHook> hook) override;
  std::shared_ptr<TensorHook> branch_hook(int tensor) const override;
  void set_tensor_hook(int tensor, std::shared_ptr<TensorHook> hook) override;
  std::shared_ptr<TensorHook> tensor_hook(int tensor) const override;

 protected:
  // `stride_one_stages`: for small inputs, the first N stride-2 convolutions (stem first) run at
  // stride 1 (see stage_stride).
  // `bn_momentum` > 0 replaces every ConvSpec's BatchNorm momentum (model.bn_momentum).
  NetworkImpl(int stride_one_stages, double bn_momentum)
      : stride_one_left_(stride_one_stages), bn_momentum_(bn_momentum) {}

  // The stride a stride-2 stage gets: 1 while small-input stages are left, else `stride`.
  int64_t stage_stride(int64_t stride);
  // Builds `spec` reading graph tensor `tensor`: its modules, LayerInfo (`conv_name`, `bn_name`) and
  // graph node. Padding is (kernel - 1) / 2.
  ConvParts add_conv(const ConvSpec& spec, const std::string& conv_name, const std::string& bn_name, int tensor);
  // A linear layer with torchvision's defaults reading `tensor`; `output` receives the tensor it writes.
  HookedLinear add_linear(int64_t in, int64_t out, LayerRole role, Activation activation, const std::string& name,
                          int tensor, int* output);
  // Squeeze-and-excitation on `tensor` (pool, fc1 + activation, fc2 + gate, channel scaling):
  // torchvision's SqueezeExcitation named `name` (fc1, fc2); `output` receives the scaled tensor.
  SqueezeExcitation add_squeeze_excitation(int64_t channels, int64_t squeeze, Activation activation, Activation gate,
                                           const std::string& name, int tensor, int* output);
  // The skip connection of `block` (skip + branch); returns the sum's tensor.
  int add_residual(const InvertedResidual& block, int skip, int branch);
  // Global average pooling of `tensor` before the head; returns the pooled tensor.
  int add_head_pool(int tensor) { return add_node(NodeKind::kGlobalAvgPool, -1, {tensor}, Activation::kNone); }
  // torchvision's usual head on `tensor`: global average pooling, then Sequential(Dropout, Linear)
  // registered as "classifier"; returns the linear layer ("classifier.1"), whose initialisation
  // differs between networks.
  HookedLinear add_dropout_linear_head(int64_t in, int64_t classes, double dropout, int tensor);
  // Registers the feature extractor and the classifier head under torchvision's names.
  void set_body(const std::string& name, torch::nn::Sequential body);
  void set_head(const std::string& name, torch::nn::Sequential head);
  // torchvision's initialisation of convolutions (Kaiming normal, fan out) and BatchNorms (1, 0);
  // linear layers differ between networks and are left to them.
  void init_convs_and_norms();

 private:
  int add_node(NodeKind kind, int layer, std::vector<int> inputs, Activation activation);

  std::vector<LayerInfo> layers_;
  std::vector<GraphNode> graph_;
  std::vector<bool> nonnegative_{false};  // per graph tensor: all values >= 0 (tensor 0: the image)
  std::map<int, InvertedResidualImpl*> branch_blocks_;  // residual branch tensor -> its block (owned by body_)
  // squeeze-and-excitation tensors -> their block (owned by body_) and hook
  std::map<int, std::pair<SqueezeExcitationImpl*, SqueezeExcitationImpl::Hook>> se_tensors_;
  std::shared_ptr<TensorHook> pool_hook_;
  torch::nn::Sequential body_{nullptr}, head_{nullptr};
  int stride_one_left_;
  double bn_momentum_;
};

}  // namespace prom::model
