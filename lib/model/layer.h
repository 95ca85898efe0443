// What each weighted layer of a model is, for quantization policies, summaries and energy counts.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace prom::model {

// The quantization policy keys on these roles.
enum class LayerRole { kStem, kDepthwise, kPointwiseExpand, kPointwiseProject, kLastConv, kClassifier };

const char* role_name(LayerRole role);
// Throws prom::ConfigError for an unknown name.
LayerRole role_from_name(const std::string& name);
const std::vector<LayerRole>& all_roles();

// One weighted layer (a convolution with its BatchNorm, or the classifier's linear layer).
struct LayerInfo {
  std::string name;  // state-dict prefix of the weight, e.g. "features.1.conv.0.0"
  LayerRole role;
  bool is_linear = false;
  int64_t in_channels = 0, out_channels = 0;
  int64_t kernel = 1, stride = 1, padding = 0, groups = 1;
  std::string bn_name;                     // state-dict prefix of the following BatchNorm ("" if none)
  torch::nn::Conv2d conv{nullptr};         // set for convolutions
  torch::nn::BatchNorm2d bn{nullptr};      // set where a BatchNorm follows
  torch::nn::Linear linear{nullptr};       // set for the classifier
};

// The interface every classification model in the registry implements.
class ClassifierModel : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  // Weighted layers in forward order.
  virtual const std::vector<LayerInfo>& layers() const = 0;
  virtual std::string arch() const = 0;
};

}  // namespace prom::model
