#include "train/grad_scaler.h"

#include "core/error.h"
#include "core/host_read.h"

namespace prom::train {

bool GradScaler::unscale(const std::vector<torch::Tensor>& params) const {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return true;
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(grads[0].device());
  // torch computes the inverse in double and stores it as float32 (exact: scales are powers of 2).
  const torch::Tensor inv_scale = torch::full({1}, static_cast<float>(1.0 / scale_), options);
  torch::Tensor found_inf = torch::zeros({1}, options);
  if (grads[0].is_cuda()) {
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale);
  } else {  // LibTorch 1.13 has no CPU kernel for it: the same in plain ops
    for (auto& g : grads) {
      found_inf.add_(g.isfinite().all().logical_not());
      g.mul_(inv_scale);
    }
  }
  return host_item<float>(found_inf) == 0;
}

void GradScaler::update(bool finite) {
  if (!finite) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
    return;
  }
  if (++growth_tracker_ == options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
}

void GradScaler::load(double scale, int64_t growth_tracker) {
  if (!(scale > 0) || growth_tracker < 0)
    throw Error("loss scale state: scale " + std::to_string(scale) + ", growth tracker " +
                std::to_string(growth_tracker) + " (expected a positive scale)");
  scale_ = scale;
  growth_tracker_ = growth_tracker;
}

}  // namespace prom::train
