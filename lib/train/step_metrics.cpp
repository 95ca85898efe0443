#include "train/step_metrics.h"

#include <cmath>

#include "core/error.h"
#include "core/host_read.h"
#include "distributed/comm.h"
#include "train/loss.h"

namespace prom::train {

StepMetrics::StepMetrics(const torch::Device& device, dist::Comm* comm, int64_t capacity)
    : comm_(comm),
      capacity_(capacity),
      queue_(torch::zeros({3, capacity}, torch::TensorOptions().dtype(torch::kFloat64).device(device))) {}

void StepMetrics::add(const StepForward& step, int64_t iteration) {
  if (queued_ == capacity_) throw Error("training metrics: more than " + std::to_string(capacity_) +
                                        " steps queued between two reads");
  if (queued_ == 0) first_iteration_ = iteration;
  torch::NoGradGuard no_grad;
  torch::Tensor column = queue_.select(1, queued_++);
  const double n = static_cast<double>(step.samples);
  column.select(0, 0).copy_(step.loss.detach().to(torch::kFloat64).mul(n));
  column.select(0, 1).fill_(n);
  column.select(0, 2).copy_(correct_counts(step.logits.detach(), step.labels).select(0, 0));
}

MetricsRead StepMetrics::read(bool stop_requested) {
  MetricsRead r;
  r.first_iteration = first_iteration_;
  torch::Tensor flat = torch::cat({queue_.narrow(1, 0, queued_).reshape({-1}),
                                   torch::full({1}, stop_requested ? 1.0 : 0.0, queue_.options())});
  if (comm_ != nullptr) comm_->allreduce_sum(flat);  // per-step sums over ranks, and the stop flags
  torch::Tensor host = host_copy(flat);
  const double* v = host.data_ptr<double>();
  const int64_t k = queued_;
  for (int64_t i = 0; i < k; ++i) {
    StepNumbers s{v[i], static_cast<int64_t>(v[k + i]), static_cast<int64_t>(v[2 * k + i])};
    if (!std::isfinite(s.loss_sum) && r.bad_iteration == 0) {
      r.bad_iteration = first_iteration_ + i;
      r.bad_is_nan = std::isnan(s.loss_sum);
    }
    r.steps.push_back(s);
  }
  r.stop = v[3 * k] > 0;
  queued_ = 0;
  return r;
}

}  // namespace prom::train
