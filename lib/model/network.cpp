#include "model/network.h"

#include <stdexcept>

namespace prom::model {

namespace nn = torch::nn;

void ConvParts::append_to(nn::Sequential& seq) const {
  seq->push_back(conv);
  if (bn) seq->push_back(bn);
  if (!act.is_empty()) seq->push_back(act);
}

Sequence ConvParts::grouped() const {
  Sequence seq;
  seq->push_back(conv);
  if (bn) seq->push_back(bn);
  if (!act.is_empty()) seq->push_back(act);
  return seq;
}

int64_t NetworkImpl::stage_stride(int64_t stride) {
  if (stride != 2 || stride_one_left_ <= 0) return stride;
  --stride_one_left_;
  return 1;
}

ConvParts NetworkImpl::add_conv(const ConvSpec& s, const std::string& conv_name, const std::string& bn_name,
                                int tensor) {
  const int64_t padding = (s.kernel - 1) / 2;
  ConvParts parts;
  parts.conv = HookedConv2d(
      nn::Conv2dOptions(s.in, s.out, s.kernel).stride(s.stride).padding(padding).groups(s.groups).bias(s.bias));
  LayerInfo info;
  info.name = conv_name;
  info.role = s.role;
  info.in_channels = s.in;
  info.out_channels = s.out;
  info.kernel = s.kernel;
  info.stride = s.stride;
  info.padding = padding;
  info.groups = s.groups;
  info.input_nonnegative = nonnegative_.at(tensor);
  info.conv = parts.conv;
  info.activation = s.activation;
  if (s.batch_norm) {
    parts.bn = nn::BatchNorm2d(nn::BatchNorm2dOptions(s.out).eps(s.bn_eps).momentum(bn_momentum_ > 0 ? bn_momentum_ : s.bn_momentum));
    info.bn_name = bn_name;
    info.bn = parts.bn;
  }
  if (s.activation == Activation::kRelu6) {
    info.act = DeferrableRelu6();
    parts.act = nn::AnyModule(info.act);
  } else if (s.activation != Activation::kNone) {
    info.activation_layer = ActivationLayer(s.activation);
    parts.act = nn::AnyModule(info.activation_layer);
  }
  layers_.push_back(info);
  parts.output = add_node(NodeKind::kConv, static_cast<int>(layers_.size() - 1), {tensor}, s.activation);
  return parts;
}

HookedLinear NetworkImpl::add_linear(int64_t in, int64_t out, LayerRole role, Activation activation,
                                     const std::string& name, int tensor, int* output) {
  auto linear = HookedLinear(in, out);
  LayerInfo info;
  info.name = name;
  info.role = role;
  info.is_linear = true;
  info.input_nonnegative = nonnegative_.at(tensor);
  info.in_channels = in;
  info.out_channels = out;
  info.linear = linear;
  info.activation = activation;
  if (activation != Activation::kNone) info.activation_layer = ActivationLayer(activation);
  layers_.push_back(info);
  *output = add_node(NodeKind::kLinear, static_cast<int>(layers_.size() - 1), {tensor}, activation);
  return linear;
}

SqueezeExcitation NetworkImpl::add_squeeze_excitation(int64_t channels, int64_t squeeze, Activation activation,
                                                      Activation gate, const std::string& name, int tensor,
                                                      int* output) {
  const int pooled = add_node(NodeKind::kGlobalAvgPool, -1, {tensor}, Activation::kNone);
  ConvSpec reduce{channels, squeeze, 1, 1, 1, LayerRole::kSeReduce, activation, /*bias=*/true, /*batch_norm=*/false};
  ConvParts fc1 = add_conv(reduce, name + ".fc1", "", pooled);
  ConvSpec expand{squeeze, channels, 1, 1, 1, LayerRole::kSeExpand, gate, /*bias=*/true, /*batch_norm=*/false};
  ConvParts fc2 = add_conv(expand, name + ".fc2", "", fc1.output);
  *output = add_node(NodeKind::kMul, -1, {tensor, fc2.output}, Activation::kNone);
  const auto& fc2_info = layers_.back();
  const auto& fc1_info = layers_[layers_.size() - 2];
  SqueezeExcitation se(fc1.conv, fc2.conv, fc1_info.activation_layer, fc2_info.activation_layer);
  se_tensors_[tensor] = {se.ptr().get(), SqueezeExcitationImpl::Hook::kInput};
  se_tensors_[pooled] = {se.ptr().get(), SqueezeExcitationImpl::Hook::kPooled};
  se_tensors_[fc2.output] = {se.ptr().get(), SqueezeExcitationImpl::Hook::kGate};
  return se;
}

int NetworkImpl::add_residual(const InvertedResidual& block, int skip, int branch) {
  branch_blocks_[branch] = block.ptr().get();
  return add_node(NodeKind::kAdd, -1, {skip, branch}, Activation::kNone);
}

int NetworkImpl::add_node(NodeKind kind, int layer, std::vector<int> inputs, Activation activation) {
  GraphNode node;
  node.kind = kind;
  node.layer = layer;
  node.inputs = std::move(inputs);
  node.output = static_cast<int>(graph_.size()) + 1;  // tensor 0 is the input
  node.activation = activation;
  bool nonnegative = false;
  switch (kind) {
    case NodeKind::kConv:
    case NodeKind::kLinear: nonnegative = nonnegative_output(activation); break;
    case NodeKind::kGlobalAvgPool: nonnegative = nonnegative_.at(node.inputs[0]); break;
    case NodeKind::kAdd:
    case NodeKind::kMul: nonnegative = nonnegative_.at(node.inputs[0]) && nonnegative_.at(node.inputs[1]); break;
  }
  nonnegative_.push_back(nonnegative);
  graph_.push_back(std::move(node));
  return graph_.back().output;
}

HookedLinear NetworkImpl::add_dropout_linear_head(int64_t in, int64_t classes, double dropout, int tensor) {
  int logits = -1;
  auto linear = add_linear(in, classes, LayerRole::kClassifier, Activation::kNone, "classifier.1",
                           add_head_pool(tensor), &logits);
  set_head("classifier", nn::Sequential(nn::Dropout(dropout), linear));
  return linear;
}

void NetworkImpl::set_body(const std::string& name, nn::Sequential body) { body_ = register_module(name, body); }

void NetworkImpl::set_head(const std::string& name, nn::Sequential head) { head_ = register_module(name, head); }

void NetworkImpl::init_convs_and_norms() {
  torch::NoGradGuard no_grad;
  for (auto& info : layers_) {
    if (info.conv) {
      nn::init::kaiming_normal_(info.conv->weight, 0.0, torch::kFanOut);
      if (info.conv->bias.defined()) nn::init::zeros_(info.conv->bias);
    }
    if (info.bn) {
      nn::init::ones_(info.bn->weight);
      nn::init::zeros_(info.bn->bias);
    }
  }
}

void NetworkImpl::set_branch_hook(int tensor, std::shared_ptr<TensorHook> hook) {
  auto it = branch_blocks_.find(tensor);
  if (it == branch_blocks_.end()) throw std::out_of_range("no residual branch writes tensor " + std::to_string(tensor));
  it->second->set_residual_hook(std::move(hook));
}

std::shared_ptr<TensorHook> NetworkImpl::branch_hook(int tensor) const {
  auto it = branch_blocks_.find(tensor);
  return it == branch_blocks_.end() ? nullptr : it->second->residual_hook();
}

void NetworkImpl::set_tensor_hook(int tensor, std::shared_ptr<TensorHook> hook) {
  auto it = se_tensors_.find(tensor);
  if (it == se_tensors_.end())
    throw std::out_of_range("no squeeze-and-excitation block holds tensor " + std::to_string(tensor));
  it->second.first->set_hook(it->second.second, std::move(hook));
}

std::shared_ptr<TensorHook> NetworkImpl::tensor_hook(int tensor) const {
  auto it = se_tensors_.find(tensor);
  return it == se_tensors_.end() ? nullptr : it->second.first->hook(it->second.second);
}

void NetworkImpl::set_pool_hook(std::shared_ptr<TensorHook> hook) {
  pool_hook_ = hook ? register_module("pool_quant", hook) : nullptr;
}

torch::Tensor NetworkImpl::forward(torch::Tensor x) {
  if (torch::Tensor exact = exact_forward_or_undefined(x); exact.defined()) return exact;
  torch::Tensor features = body_->forward(x);
  if (pool_hook_) features = pool_hook_->forward(features);
  torch::Tensor pooled = torch::adaptive_avg_pool2d(features, {1, 1}).flatten(1);
  return exact_values_in_training(x, head_->forward(pooled));
}

}  // namespace prom::model
