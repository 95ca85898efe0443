#include "model/mobilenetv2.h"

#include <algorithm>
#include <stdexcept>

namespace prom::model {
namespace {

namespace nn = torch::nn;

// Appends the conv's LayerInfo.
ConvNormAct conv_bn_relu6(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
                             LayerRole role, const std::string& name, std::vector<LayerInfo>* layers) {
  int64_t padding = (kernel - 1) / 2;
  auto conv = HookedConv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).groups(groups).bias(false));
  auto bn = nn::BatchNorm2d(out);
  auto act = DeferrableRelu6();
  ConvNormAct seq(conv, bn, act);
  LayerInfo info;
  info.name = name + ".0";
  info.role = role;
  info.in_channels = in;
  info.out_channels = out;
  info.kernel = kernel;
  info.stride = stride;
  info.padding = padding;
  info.groups = groups;
  info.bn_name = name + ".1";
  // Depthwise convs follow a ReLU6 (expansion or stem); stem, expansion and last_conv read block outputs.
  info.input_nonnegative = role == LayerRole::kDepthwise;
  info.relu6 = true;
  info.act = act;
  info.conv = conv;
  info.bn = bn;
  layers->push_back(info);
  return seq;
}

struct BlockSetting {
  int64_t expand, channels, repeats, stride;
};
constexpr BlockSetting kSettings[] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                      {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};

}  // namespace

int64_t make_divisible(double v, int64_t divisor) {
  int64_t new_v = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(new_v) < 0.9 * v) new_v += divisor;
  return new_v;
}

InvertedResidualImpl::InvertedResidualImpl(nn::Sequential conv_, HookedConv2d first_conv, bool use_residual)
    : conv(register_module("conv", conv_)), first_conv_(std::move(first_conv)), use_residual_(use_residual) {
  // The block quantizes its input once, for the skip path and the first conv alike.
  if (use_residual_) first_conv_->input_prequantized = true;
}

void InvertedResidualImpl::set_residual_hook(std::shared_ptr<TensorHook> hook) {
  residual_hook_ = hook ? register_module("residual_quant", hook) : nullptr;
}

torch::Tensor InvertedResidualImpl::forward(torch::Tensor x) {
  if (!use_residual_) return conv->forward(x);
  // Under quantization the skip path carries the quantized input (what the integer engine adds).
  if (first_conv_->input_hook) x = first_conv_->input_hook->forward(x);
  torch::Tensor branch = conv->forward(x);
  if (residual_hook_) branch = residual_hook_->forward(branch);
  return x + branch;
}

MobileNetV2Impl::MobileNetV2Impl(const MobileNetV2Options& o) {
  int64_t input_channel = make_divisible(32 * o.width_mult, o.round_nearest);
  int64_t last_channel = make_divisible(1280 * std::max(1.0, o.width_mult), o.round_nearest);
  int stride_one_left = o.stride_one_stages;  // stages at the input end that skip their downsampling

  features = nn::Sequential();
  int64_t stem_stride = stride_one_left > 0 ? 1 : 2;
  if (stride_one_left > 0) --stride_one_left;
  features->push_back(conv_bn_relu6(3, input_channel, 3, stem_stride, 1, LayerRole::kStem, "features.0", &layers_));
  int tensor = add_node(NodeKind::kConv, 0, {0}, true);

  for (const auto& s : kSettings) {
    int64_t output_channel = make_divisible(s.channels * o.width_mult, o.round_nearest);
    int64_t stage_stride = s.stride;
    if (stage_stride == 2 && stride_one_left > 0) {
      stage_stride = 1;
      --stride_one_left;
    }
    for (int64_t i = 0; i < s.repeats; ++i) {
      tensor = add_inverted_residual(tensor, input_channel, output_channel, s.expand, i == 0 ? stage_stride : 1);
      input_channel = output_channel;
    }
  }
  std::string last = "features." + std::to_string(features->size());
  features->push_back(conv_bn_relu6(input_channel, last_channel, 1, 1, 1, LayerRole::kLastConv, last, &layers_));
  tensor = add_node(NodeKind::kConv, static_cast<int>(layers_.size() - 1), {tensor}, true);
  tensor = add_node(NodeKind::kGlobalAvgPool, -1, {tensor}, false);
  register_module("features", features);

  auto linear = HookedLinear(last_channel, o.num_classes);
  classifier = register_module("classifier", nn::Sequential(nn::Dropout(o.dropout), linear));
  LayerInfo head;
  head.name = "classifier.1";
  head.role = LayerRole::kClassifier;
  head.is_linear = true;
  head.input_nonnegative = true;  // average of ReLU6 outputs
  head.in_channels = last_channel;
  head.out_channels = o.num_classes;
  head.linear = linear;
  layers_.push_back(head);
  add_node(NodeKind::kLinear, static_cast<int>(layers_.size() - 1), {tensor}, false);

  // torchvision's initialisation.
  torch::NoGradGuard no_grad;
  for (auto& info : layers_) {
    if (info.conv) nn::init::kaiming_normal_(info.conv->weight, 0.0, torch::kFanOut);
    if (info.bn) {
      nn::init::ones_(info.bn->weight);
      nn::init::zeros_(info.bn->bias);
    }
    if (info.linear) {
      nn::init::normal_(info.linear->weight, 0.0, 0.01);
      nn::init::zeros_(info.linear->bias);
    }
  }
}

int MobileNetV2Impl::add_inverted_residual(int tensor, int64_t in, int64_t out, int64_t expand, int64_t stride) {
  std::string block = "features." + std::to_string(features->size()) + ".conv";
  int64_t hidden = static_cast<int64_t>(std::round(in * static_cast<double>(expand)));
  nn::Sequential conv;
  size_t first_layer = layers_.size();
  const int block_input = tensor;
  auto last_layer = [&] { return static_cast<int>(layers_.size() - 1); };
  if (expand != 1) {
    conv->push_back(conv_bn_relu6(in, hidden, 1, 1, 1, LayerRole::kPointwiseExpand,
                                  block + "." + std::to_string(conv->size()), &layers_));
    tensor = add_node(NodeKind::kConv, last_layer(), {tensor}, true);
  }
  conv->push_back(conv_bn_relu6(hidden, hidden, 3, stride, hidden, LayerRole::kDepthwise,
                                block + "." + std::to_string(conv->size()), &layers_));
  tensor = add_node(NodeKind::kConv, last_layer(), {tensor}, true);
  // Linear projection: 1x1 conv + BN, no activation.
  auto project = HookedConv2d(nn::Conv2dOptions(hidden, out, 1).bias(false));
  auto bn = nn::BatchNorm2d(out);
  LayerInfo info;
  info.name = block + "." + std::to_string(conv->size());
  info.role = LayerRole::kPointwiseProject;
  info.input_nonnegative = true;  // after the depthwise ReLU6
  info.in_channels = hidden;
  info.out_channels = out;
  info.bn_name = block + "." + std::to_string(conv->size() + 1);
  info.conv = project;
  info.bn = bn;
  layers_.push_back(info);
  tensor = add_node(NodeKind::kConv, last_layer(), {tensor}, false);
  conv->push_back(project);
  conv->push_back(bn);
  auto block_module = InvertedResidual(conv, layers_[first_layer].conv, stride == 1 && in == out);
  if (block_module->use_residual()) {
    branch_blocks_[tensor] = block_module.ptr().get();
    tensor = add_node(NodeKind::kAdd, -1, {block_input, tensor}, false);
  }
  features->push_back(block_module);
  return tensor;
}

int MobileNetV2Impl::add_node(NodeKind kind, int layer, std::vector<int> inputs, bool relu6) {
  GraphNode node;
  node.kind = kind;
  node.layer = layer;
  node.inputs = std::move(inputs);
  node.output = static_cast<int>(graph_.size()) + 1;  // tensor 0 is the input
  node.relu6 = relu6;
  graph_.push_back(std::move(node));
  return graph_.back().output;
}

void MobileNetV2Impl::set_branch_hook(int tensor, std::shared_ptr<TensorHook> hook) {
  auto it = branch_blocks_.find(tensor);
  if (it == branch_blocks_.end()) throw std::out_of_range("no residual branch writes tensor " + std::to_string(tensor));
  it->second->set_residual_hook(std::move(hook));
}

std::shared_ptr<TensorHook> MobileNetV2Impl::branch_hook(int tensor) const {
  auto it = branch_blocks_.find(tensor);
  return it == branch_blocks_.end() ? nullptr : it->second->residual_hook();
}

void MobileNetV2Impl::set_pool_hook(std::shared_ptr<TensorHook> hook) {
  pool_hook_ = hook ? register_module("pool_quant", hook) : nullptr;
}

torch::Tensor MobileNetV2Impl::forward(torch::Tensor x) {
  if (torch::Tensor exact = exact_forward_or_undefined(x); exact.defined()) return exact;
  torch::Tensor features_out = features->forward(x);
  if (pool_hook_) features_out = pool_hook_->forward(features_out);
  torch::Tensor pooled = torch::adaptive_avg_pool2d(features_out, {1, 1}).flatten(1);
  return exact_values_in_training(x, classifier->forward(pooled));
}

}  // namespace prom::model
