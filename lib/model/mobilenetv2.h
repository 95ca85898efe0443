// MobileNetV2 (Sandler et al. 2018) exactly as torchvision defines it, with torchvision's
// state-dict names (features.0.0.weight, features.1.conv.0.0.weight, classifier.1.weight, ...).
#pragma once
#include "model/network.h"

namespace prom::model {

struct MobileNetV2Options {
  int64_t num_classes = 1000;
  double width_mult = 1.0;
  int round_nearest = 8;
  double dropout = 0.2;
  // Small inputs (28-64 px): the first N stride-2 stages (stem first) run at stride 1.
  int stride_one_stages = 0;
  double bn_momentum = 0.0;   // > 0: replaces torchvision's BatchNorm momentum (model.bn_momentum)
};

// torchvision's _make_divisible: round to a multiple of `divisor`, never more than 10% below v.
int64_t make_divisible(double v, int64_t divisor);

class MobileNetV2Impl : public NetworkImpl {
 public:
  explicit MobileNetV2Impl(const MobileNetV2Options& options);
  std::string arch() const override { return "mobilenet_v2"; }

 private:
  // Appends one inverted residual block to `features` reading `tensor`; returns the tensor it writes.
  int add_inverted_residual(torch::nn::Sequential& features, int tensor, int64_t in, int64_t out, int64_t expand,
                            int64_t stride);
};

}  // namespace prom::model
