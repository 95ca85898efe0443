// A BatchSource over tensors held in memory: the synthetic data set (data.synthetic) that lets
// prom-train, prom-eval, the benchmarks and the tests run without images, and any small tensor
// data set. Same determinism rules as the image pipeline: the order of an epoch is a pure function
// of (seed, epoch, rank, world size); each rank sees a disjoint, equal-sized shard.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/batch_source.h"

namespace prom::data {

struct TensorSourceOptions {
  int64_t batch_size = 32;     // per rank
  bool shuffle = true;         // training: a fresh permutation per epoch
  bool drop_last = false;      // training drops the partial last batch (BatchNorm needs > 1 sample)
  uint64_t seed = 0;
  int rank = 0, world_size = 1;
  bool channels_last = false;  // deliver NHWC-strided batches
};

class TensorSource : public BatchSource {
 public:
  // images: float [N, 3, H, W] (already normalised); labels: int64 [N] in [0, classes.size()).
  TensorSource(torch::Tensor images, torch::Tensor labels, std::vector<std::string> classes,
               const TensorSourceOptions& options);

  void start_epoch(int64_t epoch) override;
  std::optional<Batch> next() override;
  int64_t batches_per_epoch() const override;
  int64_t size() const override { return shard_size_; }
  const std::vector<std::string>& classes() const override { return classes_; }
  SourceStats stats() const override { return stats_; }

  // The sample indices this rank visits in `epoch`, in order (exposed for the determinism tests).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  torch::Tensor images_, labels_;
  std::vector<std::string> classes_;
  TensorSourceOptions options_;
  int64_t shard_size_ = 0;
  std::vector<int64_t> order_;
  size_t cursor_ = 0;
  SourceStats stats_;
};

// The synthetic data set of config.data.synthetic: one smooth random prototype per class, each
// sample its prototype plus Gaussian noise, so that a model can learn it. `eval` draws different
// samples (and eval_samples of them) from the same prototypes.
std::unique_ptr<TensorSource> make_synthetic_source(const config::Config& config, bool eval,
                                                    const TensorSourceOptions& options);

// "class_000", "class_001", ...: the class names of the synthetic data set.
std::vector<std::string> synthetic_class_names(int64_t classes);

}  // namespace prom::data
