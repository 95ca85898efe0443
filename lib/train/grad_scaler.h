// Dynamic loss scaling for fp16 training (train.amp: fp16), with the rules and defaults of
// torch.cuda.amp.GradScaler: the loss is multiplied by `scale` before backward so that small
// gradients survive fp16; the gradients are divided by it before the update. A step whose
// gradients hold an Inf or NaN is skipped and the scale halves (backoff 0.5); after `interval`
// (2000) good steps in a row it doubles (growth 2). Starts at 65536. Deciding to skip costs one
// host read per step, as in torch (bf16 needs no scaling: it has fp32's range).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace prom::train {

class GradScaler {
 public:
  struct Options {
    double init_scale = 65536.0;
    double growth_factor = 2.0;
    double backoff_factor = 0.5;
    int64_t growth_interval = 2000;
  };
  GradScaler() : GradScaler(Options()) {}
  explicit GradScaler(const Options& options) : options_(options), scale_(options.init_scale) {}

  // loss * scale.
  torch::Tensor scale_loss(const torch::Tensor& loss) const { return loss * scale_; }
  // Divides the gradients of `params` by the scale in place; false when any of them holds an Inf
  // or a NaN (the step must then be skipped). One host read.
  bool unscale(const std::vector<torch::Tensor>& params) const;
  // After a step: lowers the scale after non-finite gradients, raises it after a run of good steps.
  void update(bool finite);

  double scale() const { return scale_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  // The state a checkpoint holds (scale() and growth_tracker()).
  void load(double scale, int64_t growth_tracker);

 private:
  Options options_;
  double scale_;
  int64_t growth_tracker_ = 0;  // good steps since the scale last changed
};

}  // namespace prom::train
