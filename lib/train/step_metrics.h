// The numbers of the training steps -- loss, top-1 count, samples -- queued on the device and read
// back in one go: every run.log_every iterations, at the end of an epoch and before a checkpoint.
// A step itself reads nothing back (on CUDA a read is a synchronisation that stalls the step).
// With data-parallel ranks a read is one all-reduce of the queue (per-step global sums) plus the
// ranks' stop flags. A non-finite loss is therefore seen at the next read, before any checkpoint is
// written after it: the last good checkpoint stays.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "train/train_step.h"

namespace prom::dist {
class Comm;
}

namespace prom::train {

// One step's numbers, summed over ranks.
struct StepNumbers {
  double loss_sum = 0;  // mean loss * samples
  int64_t samples = 0;
  int64_t top1 = 0;     // correctly classified samples
};

struct MetricsRead {
  int64_t first_iteration = 0;     // 1-based iteration of steps[0]
  std::vector<StepNumbers> steps;  // the steps since the previous read, in order
  bool stop = false;               // some rank asked to stop (a signal)
  int64_t bad_iteration = 0;       // the first of them with a non-finite loss (0: none)
  bool bad_is_nan = false;         // ... NaN (else Inf)
};

class StepMetrics {
 public:
  // `capacity`: the most steps queued between two reads.
  StepMetrics(const torch::Device& device, dist::Comm* comm, int64_t capacity);

  // Queues the numbers of step `iteration` (1-based); no host read.
  void add(const StepForward& step, int64_t iteration);
  int64_t queued() const { return queued_; }
  bool full() const { return queued_ == capacity_; }
  // Reads and empties the queue: one host read (after one all-reduce with ranks). Every rank must
  // call it at the same iterations.
  MetricsRead read(bool stop_requested);

 private:
  dist::Comm* comm_;
  int64_t capacity_;
  torch::Tensor queue_;  // float64 [3, capacity]: loss * samples, samples, top-1 count
  int64_t queued_ = 0, first_iteration_ = 0;
};

}  // namespace prom::train
