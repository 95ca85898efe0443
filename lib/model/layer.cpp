#include "model/layer.h"

#include "core/error.h"

namespace prom::model {

const std::vector<LayerRole>& all_roles() {
  static const std::vector<LayerRole> roles = {LayerRole::kStem,           LayerRole::kDepthwise,
                                               LayerRole::kPointwiseExpand, LayerRole::kPointwiseProject,
                                               LayerRole::kLastConv,        LayerRole::kClassifier};
  return roles;
}

const char* role_name(LayerRole role) {
  switch (role) {
    case LayerRole::kStem: return "stem";
    case LayerRole::kDepthwise: return "depthwise";
    case LayerRole::kPointwiseExpand: return "pointwise_expand";
    case LayerRole::kPointwiseProject: return "pointwise_project";
    case LayerRole::kLastConv: return "last_conv";
    case LayerRole::kClassifier: return "classifier";
  }
  return "unknown";
}

LayerRole role_from_name(const std::string& name) {
  for (LayerRole r : all_roles())
    if (name == role_name(r)) return r;
  throw ConfigError("unknown layer role '" + name +
                    "' (roles: stem, depthwise, pointwise_expand, pointwise_project, last_conv, classifier)");
}

const char* node_kind_name(NodeKind kind) {
  switch (kind) {
    case NodeKind::kConv: return "conv";
    case NodeKind::kLinear: return "linear";
    case NodeKind::kAdd: return "add";
    case NodeKind::kGlobalAvgPool: return "avgpool";
  }
  return "unknown";
}

torch::Tensor DeferrableRelu6Impl::forward(torch::Tensor x) {
  if (deferred) return x;
  return torch::nn::functional::relu6(x, torch::nn::functional::ReLU6FuncOptions().inplace(true));
}

torch::Tensor HookedConv2dImpl::forward(const torch::Tensor& x) {
  const torch::Tensor& in = input_hook && !input_prequantized ? input_hook->forward(x) : x;
  return _conv_forward(in, weight_hook ? weight_hook->forward(weight) : weight);
}

void HookedConv2dImpl::set_hooks(std::shared_ptr<TensorHook> input, std::shared_ptr<TensorHook> w) {
  input_hook = input ? register_module("input_quant", input) : nullptr;
  weight_hook = w ? register_module("weight_quant", w) : nullptr;
}

torch::Tensor HookedLinearImpl::forward(const torch::Tensor& x) {
  const torch::Tensor& in = input_hook ? input_hook->forward(x) : x;
  return torch::linear(in, weight_hook ? weight_hook->forward(weight) : weight, bias);
}

void HookedLinearImpl::set_hooks(std::shared_ptr<TensorHook> input, std::shared_ptr<TensorHook> w) {
  input_hook = input ? register_module("input_quant", input) : nullptr;
  weight_hook = w ? register_module("weight_quant", w) : nullptr;
}

}  // namespace prom::model
