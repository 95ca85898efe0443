// EfficientNet-B0 (Tan and Le 2019) exactly as torchvision defines it, with torchvision's state-dict
// names (features.1.0.block.0.0.weight, features.1.0.block.1.fc1.weight, classifier.1.weight, ...).
#pragma once
#include "model/network.h"

namespace prom::model {

struct EfficientNetOptions {
  int64_t num_classes = 1000;
  double width_mult = 1.0;  // B0: 1.0 (torchvision's MBConvConfig scaling; depth stays B0's)
  double dropout = 0.2;
  double stochastic_depth = 0.2;  // the last block's drop probability; block i gets 0.2 * i / 16
  int stride_one_stages = 0;  // small inputs: the first N stride-2 convolutions (stem first) at stride 1
  double bn_momentum = 0.0;   // > 0: replaces torchvision's BatchNorm momentum (model.bn_momentum)
};

class EfficientNetImpl : public NetworkImpl {
 public:
  explicit EfficientNetImpl(const EfficientNetOptions& options);
  std::string arch() const override { return "efficientnet_b0"; }
};

}  // namespace prom::model
