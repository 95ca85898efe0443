// What each weighted layer of a model is, for quantization policies, summaries and energy counts.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace prom::model {

// The quantization policy keys on these roles. Squeeze-and-excitation blocks (MobileNetV3,
// EfficientNet) add their two 1x1 convolutions; MobileNetV3's head adds a hidden linear layer.
enum class LayerRole {
  kStem,
  kDepthwise,
  kPointwiseExpand,
  kPointwiseProject,
  kLastConv,
  kClassifier,
  kSeReduce,
  kSeExpand,
  kClassifierHidden
};

const char* role_name(LayerRole role);
// Throws prom::ConfigError for an unknown name.
LayerRole role_from_name(const std::string& name);
const std::vector<LayerRole>& all_roles();

// The elementwise function that follows a layer (after its BatchNorm), as torchvision defines it.
enum class Activation { kNone, kRelu, kRelu6, kHardswish, kHardsigmoid, kSilu, kSigmoid };
const char* activation_name(Activation activation);
// f(x) in float, out of place: what the modules compute (the reference for integer tables).
torch::Tensor apply_activation(Activation activation, const torch::Tensor& x);
// True where every output of `activation` is >= 0 (its consumer may quantize to unsigned codes).
bool nonnegative_output(Activation activation);

// A transform applied to a layer's weight or input: fake quantization (lib/quant) plugs in here, so
// the model needs no knowledge of quantizers. The float model has none and keeps torchvision's names.
class TensorHook : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

// nn::Conv2d and nn::Linear with optional input and weight hooks (registered as the submodules
// "input_quant" and "weight_quant", so their state lands in checkpoints).
class HookedConv2dImpl : public torch::nn::Conv2dImpl {
 public:
  using torch::nn::Conv2dImpl::Conv2dImpl;
  torch::Tensor forward(const torch::Tensor& x);
  void set_hooks(std::shared_ptr<TensorHook> input, std::shared_ptr<TensorHook> weight);
  std::shared_ptr<TensorHook> input_hook, weight_hook;
  // Set by a residual block that quantizes its input once for both the skip path and this conv.
  bool input_prequantized = false;
};
TORCH_MODULE(HookedConv2d);

class HookedLinearImpl : public torch::nn::LinearImpl {
 public:
  using torch::nn::LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& x);
  void set_hooks(std::shared_ptr<TensorHook> input, std::shared_ptr<TensorHook> weight);
  std::shared_ptr<TensorHook> input_hook, weight_hook;
};
TORCH_MODULE(HookedLinear);

// torchvision's in-place ReLU6, which the consumer of its output may take over: lib/quant fuses it
// into the next activation quantizer's pass (same values and gradients, fewer passes over memory)
// and sets `deferred`; this module then passes its input through unchanged.
class DeferrableRelu6Impl : public torch::nn::Module {
 public:
  torch::Tensor forward(torch::Tensor x);
  bool deferred = false;
};
TORCH_MODULE(DeferrableRelu6);

// An activation without parameters (torchvision's nn.ReLU, nn.Hardswish, nn.SiLU, ...). ReLU6 has its
// own module (DeferrableRelu6) because lib/quant may fuse it into a quantizer. Under quantization an
// input hook may round the pre-activation values to an int8 grid: the integer model then computes the
// activation as a lookup table on those codes (lib/quant/activation_table.h).
class ActivationLayerImpl : public torch::nn::Module {
 public:
  explicit ActivationLayerImpl(Activation kind) : kind_(kind) {}
  torch::Tensor forward(torch::Tensor x);
  Activation kind() const { return kind_; }
  void set_input_hook(std::shared_ptr<TensorHook> hook);
  std::shared_ptr<TensorHook> input_hook() const { return input_hook_; }

 private:
  Activation kind_;
  std::shared_ptr<TensorHook> input_hook_;
};
TORCH_MODULE(ActivationLayer);

// One weighted layer (a convolution with its BatchNorm, or the classifier's linear layer).
struct LayerInfo {
  std::string name;  // state-dict prefix of the weight, e.g. "features.1.conv.0.0"
  LayerRole role;
  bool is_linear = false;
  int64_t in_channels = 0, out_channels = 0;
  int64_t kernel = 1, stride = 1, padding = 0, groups = 1;
  std::string bn_name;                     // state-dict prefix of the following BatchNorm ("" if none)
  bool input_nonnegative = false;          // the input comes from a ReLU or ReLU6 (unsigned activations)
  HookedConv2d conv{nullptr};              // set for convolutions
  torch::nn::BatchNorm2d bn{nullptr};      // set where a BatchNorm follows
  HookedLinear linear{nullptr};            // set for the classifier
  Activation activation = Activation::kNone;  // what follows the BatchNorm (or the bias)
  DeferrableRelu6 act{nullptr};  // the module, where the activation is a ReLU6 (lib/quant may fuse it)
  ActivationLayer activation_layer{nullptr};  // the module, for the other activations
};

// The model's dataflow over numbered tensors, in execution order: what lowering walks, what the exact
// fake-quant forward executes and what the integer graph mirrors (one tensor id space for all three).
// Tensor 0 is the input image; node k writes tensor k + 1 (models build it with that numbering).
// kMul scales its first input's channels by its second input (a [N, C, 1, 1] gate): squeeze-and-excitation.
enum class NodeKind { kConv, kLinear, kAdd, kGlobalAvgPool, kMul };
const char* node_kind_name(NodeKind kind);

struct GraphNode {
  NodeKind kind = NodeKind::kConv;
  int layer = -1;           // kConv / kLinear: index into layers()
  std::vector<int> inputs;  // kAdd: {skip, branch}; kMul: {features, gate}; otherwise one tensor
  int output = -1;
  Activation activation = Activation::kNone;  // kConv / kLinear: what follows the layer (and its BatchNorm)
};

// The exact integer forward (lib/quant/exact_forward.h) as a model sees it.
class ExactForwardHook {
 public:
  virtual ~ExactForwardHook() = default;
  // Eval-mode logits, bit for bit the exported integer model's; undefined while it cannot run yet.
  virtual torch::Tensor eval_forward(const torch::Tensor& x) = 0;
  // Training: the exact logits as values with the simulated logits' gradients, where the integer
  // model is defined (BatchNorm on running statistics, observers frozen); `simulated` otherwise.
  virtual torch::Tensor train_forward(const torch::Tensor& x, const torch::Tensor& simulated) = 0;
  // Called before the modules' (simulated) forward runs: lets the hook prepare what that forward
  // should model of the integer arithmetic (e.g. short requantization multipliers' gains).
  virtual void before_simulated_forward() {}
};

// The interface every classification model in the registry implements.
class ClassifierModel : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  // Weighted layers in forward order.
  virtual const std::vector<LayerInfo>& layers() const = 0;
  virtual std::string arch() const = 0;
  // A hook on the last feature map before global average pooling (the integer engine quantizes
  // there and pools in integers). nullptr clears it.
  virtual void set_pool_hook(std::shared_ptr<TensorHook> hook) = 0;
  virtual std::shared_ptr<TensorHook> pool_hook() const = 0;
  // The dataflow graph (see GraphNode).
  virtual const std::vector<GraphNode>& graph() const = 0;
  // A hook on a residual branch before its add (the integer engine requantizes it there): `tensor`
  // is the add node's second input. Throws std::out_of_range for a tensor that is no such branch.
  virtual void set_branch_hook(int tensor, std::shared_ptr<TensorHook> hook) = 0;
  virtual std::shared_ptr<TensorHook> branch_hook(int tensor) const = 0;
  // Hooks on the tensors of a squeeze-and-excitation block that no layer reads: its input (a kMul
  // node's first input, also read by its pooling), its pooled input and its gate (the kMul node's
  // second input). Throws std::out_of_range for another tensor.
  virtual void set_tensor_hook(int tensor, std::shared_ptr<TensorHook> hook) = 0;
  virtual std::shared_ptr<TensorHook> tensor_hook(int tensor) const = 0;
  // lib/quant's exact integer forward: in eval mode it computes forward() instead of the modules;
  // in training it may replace the simulated logits' values (see ExactForwardHook). Not a submodule:
  // it holds no state of its own.
  void set_exact_forward(std::shared_ptr<ExactForwardHook> exact) { exact_forward_ = std::move(exact); }
  bool has_exact_forward() const { return exact_forward_ != nullptr; }
  std::shared_ptr<ExactForwardHook> exact_forward() const { return exact_forward_; }

 protected:
  // forward() calls this first: the exact forward's result in eval mode, undefined otherwise.
  torch::Tensor exact_forward_or_undefined(const torch::Tensor& x) {
    if (!exact_forward_) return {};
    if (!is_training())
      if (torch::Tensor exact = exact_forward_->eval_forward(x); exact.defined()) return exact;
    exact_forward_->before_simulated_forward();
    return {};
  }
  // ... and this last, in training, on the logits of the modules.
  torch::Tensor exact_values_in_training(const torch::Tensor& x, const torch::Tensor& simulated) {
    return exact_forward_ ? exact_forward_->train_forward(x, simulated) : simulated;
  }

 private:
  std::shared_ptr<ExactForwardHook> exact_forward_;
};

}  // namespace prom::model
