// The one interface between data and training: a stream of ready batches for one rank, one epoch at
// a time. Header-only and torch-only, so lib/train builds where OpenCV (prom_data) is absent.
// Implementations: the OpenCV image pipeline (prom_data) and in-memory tensors (tests, benchmarks).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace prom::data {

struct Batch {
  torch::Tensor images;   // float32 [N, 3, H, W], normalised; channels_last when the source was asked to
  torch::Tensor labels;   // int64 [N]
  torch::Tensor indices;  // int64 [N]: sample indices in the dataset (eval bookkeeping, determinism tests)
};

// Counters a source keeps per epoch (reported in the epoch's metrics).
struct SourceStats {
  int64_t samples = 0;       // delivered this epoch
  int64_t bad_files = 0;     // skipped under the `skip` policy this epoch
  double wait_seconds = 0;   // time next() spent blocked waiting for a batch
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Starts epoch `epoch`: the order is a pure function of (seed, epoch, rank, world size).
  virtual void start_epoch(int64_t epoch) = 0;
  // The next batch of the epoch, or nullopt when the epoch is over.
  virtual std::optional<Batch> next() = 0;
  virtual int64_t batches_per_epoch() const = 0;
  // Samples this rank sees per epoch.
  virtual int64_t size() const = 0;
  // Class names, index = label. Fixed at training time; travels with checkpoints.
  virtual const std::vector<std::string>& classes() const = 0;
  virtual SourceStats stats() const = 0;
};

}  // namespace prom::data
