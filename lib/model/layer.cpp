#include "model/layer.h"

#include "core/error.h"

namespace prom::model {

const std::vector<LayerRole>& all_roles() {
  static const std::vector<LayerRole> roles = {
      LayerRole::kStem,     LayerRole::kDepthwise,  LayerRole::kPointwiseExpand, LayerRole::kPointwiseProject,
      LayerRole::kLastConv, LayerRole::kClassifier, LayerRole::kSeReduce,        LayerRole::kSeExpand,
      LayerRole::kClassifierHidden};
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
    case LayerRole::kSeReduce: return "se_reduce";
    case LayerRole::kSeExpand: return "se_expand";
    case LayerRole::kClassifierHidden: return "classifier_hidden";
  }
  return "unknown";
}

LayerRole role_from_name(const std::string& name) {
  for (LayerRole r : all_roles())
    if (name == role_name(r)) return r;
  std::string known;
  for (LayerRole r : all_roles()) known += std::string(known.empty() ? "" : ", ") + role_name(r);
  throw ConfigError("unknown layer role '" + name + "' (roles: " + known + ")");
}

const char* activation_name(Activation activation) {
  switch (activation) {
    case Activation::kNone: return "none";
    case Activation::kRelu: return "relu";
    case Activation::kRelu6: return "relu6";
    case Activation::kHardswish: return "hardswish";
    case Activation::kHardsigmoid: return "hardsigmoid";
    case Activation::kSilu: return "silu";
    case Activation::kSigmoid: return "sigmoid";
  }
  return "unknown";
}

torch::Tensor apply_activation(Activation activation, const torch::Tensor& x) {
  switch (activation) {
    case Activation::kNone: return x;
    case Activation::kRelu: return torch::relu(x);
    case Activation::kRelu6: return torch::clamp(x, 0, 6);
    case Activation::kHardswish: return torch::hardswish(x);
    case Activation::kHardsigmoid: return torch::hardsigmoid(x);
    case Activation::kSilu: return torch::silu(x);
    case Activation::kSigmoid: return torch::sigmoid(x);
  }
  return x;
}

bool nonnegative_output(Activation activation) {
  return activation == Activation::kRelu || activation == Activation::kRelu6 ||
         activation == Activation::kHardsigmoid || activation == Activation::kSigmoid;
}

const char* node_kind_name(NodeKind kind) {
  switch (kind) {
    case NodeKind::kConv: return "conv";
    case NodeKind::kLinear: return "linear";
    case NodeKind::kAdd: return "add";
    case NodeKind::kGlobalAvgPool: return "avgpool";
    case NodeKind::kMul: return "mul";
  }
  return "unknown";
}

namespace {

// clamp(x, 0, max) in place whose backward reads its output: the output is inside (0, max) exactly
// where the input is, so the gradient mask is the same as from the input. LibTorch's hardtanh_ (what
// an in-place relu6 calls) keeps a copy of its input for the backward instead: one more pass over
// the activation and its memory.
struct InPlaceClampFromZero : public torch::autograd::Function<InPlaceClampFromZero> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, double max) {
    x.clamp_(0, max);  // Function::apply runs this without grad mode: the version counter moves
    ctx->mark_dirty({x});
    ctx->save_for_backward({x});
    ctx->saved_data["max"] = max;
    return x;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::Tensor y = ctx->get_saved_variables()[0];
    const double max = ctx->saved_data["max"].toDouble();
    // One fused pass where ATen has it; LibTorch 1.13 has no bf16 CPU kernel for hardtanh_backward
    // (bf16 autocast), so other types select the gradient directly: the same values either way.
    if (y.scalar_type() == torch::kFloat || y.scalar_type() == torch::kDouble)
      return {torch::hardtanh_backward(grads[0], y, 0, max), torch::Tensor()};
    return {torch::where(y.gt(0).logical_and(y.lt(max)), grads[0], torch::zeros_like(grads[0])), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor DeferrableRelu6Impl::forward(torch::Tensor x) {
  if (deferred) return x;
  if (!torch::GradMode::is_enabled() || !x.requires_grad()) return x.clamp_(0, 6);
  return InPlaceClampFromZero::apply(x, 6.0);
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

void ActivationLayerImpl::set_input_hook(std::shared_ptr<TensorHook> hook) {
  input_hook_ = hook ? register_module("input_quant", hook) : nullptr;
}

torch::Tensor ActivationLayerImpl::forward(torch::Tensor x) {
  if (input_hook_) x = input_hook_->forward(x);
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

}  // namespace prom::model
