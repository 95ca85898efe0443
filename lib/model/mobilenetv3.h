// MobileNetV3 Small and Large (Howard et al. 2019) exactly as torchvision defines them, with
// torchvision's state-dict names (features.1.block.0.0.weight, features.1.block.1.fc1.weight,
// classifier.0.weight, classifier.3.weight, ...).
#pragma once
#include "model/network.h"

namespace prom::model {

struct MobileNetV3Options {
  bool large = false;  // mobilenet_v3_large; otherwise mobilenet_v3_small
  int64_t num_classes = 1000;
  double width_mult = 1.0;
  double dropout = 0.2;
  int stride_one_stages = 0;  // small inputs: the first N stride-2 convolutions (stem first) at stride 1
  double bn_momentum = 0.0;   // > 0: replaces torchvision's BatchNorm momentum (model.bn_momentum)
};

class MobileNetV3Impl : public NetworkImpl {
 public:
  explicit MobileNetV3Impl(const MobileNetV3Options& options);
  std::string arch() const override { return large_ ? "mobilenet_v3_large" : "mobilenet_v3_small"; }

 private:
  bool large_;
};

}  // namespace prom::model
