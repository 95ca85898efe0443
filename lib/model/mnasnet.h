// MNASNet B1 (Tan et al. 2019) exactly as torchvision defines it (mnasnet0_5, 0_75, 1_0, 1_3), with
// torchvision's state-dict names (layers.0.weight, layers.8.0.layers.3.weight, classifier.1.weight, ...).
#pragma once
#include "model/network.h"

namespace prom::model {

struct MNASNetOptions {
  std::string arch = "mnasnet1_0";  // torchvision's builder name
  double alpha = 1.0;               // the width multiplier that name fixes (mnasnet0_5: 0.5)
  int64_t num_classes = 1000;
  double dropout = 0.2;
  int stride_one_stages = 0;  // small inputs: the first N stride-2 convolutions (stem first) at stride 1
  double bn_momentum = 0.0;   // > 0: replaces torchvision's BatchNorm momentum (model.bn_momentum)
};

class MNASNetImpl : public NetworkImpl {
 public:
  explicit MNASNetImpl(const MNASNetOptions& options);
  std::string arch() const override { return arch_; }

 private:
  std::string arch_;
};

}  // namespace prom::model
