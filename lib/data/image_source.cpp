// The OpenCV image pipeline behind make_image_source(): dataset scan, per-epoch shard plan, and a
// prefetching thread pool that decodes and transforms whole batches.
//
// Sharding and batch counts:
//   train: the whole dataset is shuffled from (seed, epoch); rank r takes every world_size-th sample
//          starting at r, and the last (size mod world_size) samples of the permutation are dropped,
//          so every rank has the same number of samples and batches (the dropped ones differ per
//          epoch). The partial last batch is dropped too (as TensorSource's drop_last does), unless
//          the shard is smaller than one batch: every batch is full (but for skipped bad files).
//   eval:  no shuffle; rank r takes samples r, r + world_size, ...: every sample exactly once, no
//          padding; ranks may differ by one sample, and the last batch may be short.
// Determinism: augmentation draws from Rng(seed, epoch, sample index), so batches are bitwise equal
// for any data.workers and any rank layout that puts the sample in the same batch.
// Bad files under `skip`: the sample is left out, so its batch comes out one shorter (never
// substituted); batch counts do not change. A batch whose samples all fail is delivered empty (N = 0).
#include "data/image_source.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <opencv2/core.hpp>

#include "core/build_info.h"
#include "core/error.h"
#include "core/thread_defaults.h"
#include "data/dataset.h"
#include "data/decode.h"
#include "data/prefetch.h"
#include "data/rng.h"
#include "data/transforms.h"

namespace prom::data {
namespace fs = std::filesystem;

namespace {

struct BatchResult {
  Batch batch;
  int64_t bad_files = 0;
  std::string last_bad;  // "path: problem" of the last skipped file
};

std::string under_root(const std::string& root, const std::string& p) {
  if (p.empty()) return p;
  return (fs::path(root) / p).string();  // an absolute p stays as it is
}

class ImageSource : public BatchSource {
 public:
  ImageSource(const config::Config& config, const ImageSourceOptions& options, Dataset dataset)
      : options_(options),
        data_(config.data),
        seed_(static_cast<uint64_t>(config.run.seed)),
        dataset_(std::move(dataset)),
        transform_(config.data, options.split == Split::kTrain),
        skip_bad_(config.data.bad_files == "skip"),
        pin_(options.pin_memory && torch::cuda::is_available()) {
    if (options_.world_size < 1 || options_.rank < 0 || options_.rank >= options_.world_size)
      throw ConfigError("image source: rank " + std::to_string(options_.rank) + " is outside world size " +
                        std::to_string(options_.world_size));
    if (options_.batch_size < 1) throw ConfigError("image source: batch size must be at least 1");
    const int64_t n = static_cast<int64_t>(dataset_.samples.size()), w = options_.world_size;
    shard_size_ = options_.split == Split::kTrain ? n / w : (n - options_.rank + w - 1) / w;
    if (shard_size_ == 0)
      throw Error(at_path(dataset_.root, std::to_string(n) + " samples cannot feed " + std::to_string(w) + " ranks"));
    // Training drops the partial last batch (BatchNorm needs more than one sample), unless the shard
    // is smaller than one batch.
    if (options_.split == Split::kTrain && shard_size_ >= options_.batch_size)
      shard_size_ -= shard_size_ % options_.batch_size;
    // data.workers 0: this rank's share of the cores (core/thread_defaults.h).
    const int workers = decode_threads(data_.workers, available_cores());
    // At least one batch in flight per worker, or some would idle.
    const int depth = std::max(data_.prefetch_batches, workers);
    pool_ = std::make_unique<OrderedPrefetcher<BatchResult>>(workers, depth, [] {
      // Parallelism comes from the pool; OpenCV's own threads would only oversubscribe the cores.
      cv::setNumThreads(0);
    });
  }

  void start_epoch(int64_t epoch) override {
    epoch_ = epoch;
    started_ = true;
    stats_ = SourceStats{};
    last_bad_.clear();
    const int64_t n = static_cast<int64_t>(dataset_.samples.size()), w = options_.world_size;
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    if (options_.split == Split::kTrain) {
      Rng rng({seed_, static_cast<uint64_t>(epoch), kRngShuffle});
      for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.integer(0, i)]);  // Fisher-Yates
    }
    auto shard = std::make_shared<std::vector<int64_t>>();
    shard->reserve(static_cast<size_t>(shard_size_));
    for (int64_t k = 0; k < shard_size_; ++k) shard->push_back(order[static_cast<size_t>(options_.rank + k * w)]);
    pool_->start(batches_per_epoch(), [this, shard, epoch](int64_t b) { return make_batch(*shard, epoch, b); });
  }

  std::optional<Batch> next() override {
    if (!started_) start_epoch(0);
    auto t0 = std::chrono::steady_clock::now();
    std::optional<BatchResult> r = pool_->next();
    stats_.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!r) {
      if (stats_.bad_files > 0)
        spdlog::warn("data: epoch {}: skipped {} bad file(s) of {} samples in {}", epoch_, stats_.bad_files,
                     shard_size_, dataset_.root);
      return std::nullopt;
    }
    stats_.samples += r->batch.labels.size(0);
    stats_.bad_files += r->bad_files;
    if (r->bad_files > 0) last_bad_ = r->last_bad;
    if (static_cast<double>(stats_.bad_files) > data_.max_bad_fraction * static_cast<double>(shard_size_))
      throw Error(at_path(dataset_.root, std::to_string(stats_.bad_files) + " of this epoch's " +
                                             std::to_string(shard_size_) +
                                             " samples failed to load, more than data.max_bad_fraction = " +
                                             std::to_string(data_.max_bad_fraction) + " (last: " + last_bad_ + ")"));
    return std::move(r->batch);
  }

  int64_t batches_per_epoch() const override { return (shard_size_ + options_.batch_size - 1) / options_.batch_size; }
  int64_t size() const override { return shard_size_; }
  const std::vector<std::string>& classes() const override { return dataset_.classes; }
  SourceStats stats() const override { return stats_; }

 private:
  // Runs on a pool thread: decodes and transforms batch b of the shard into one tensor.
  BatchResult make_batch(const std::vector<int64_t>& shard, int64_t epoch, int64_t b) const {
    const int64_t begin = b * options_.batch_size;
    const int64_t count = std::min<int64_t>(options_.batch_size, static_cast<int64_t>(shard.size()) - begin);
    const int64_t h = transform_.out_height(), w = transform_.out_width();
    torch::Tensor images = batch_buffer(count, h, w);
    // Labels go to the device with the images: pinned too, so both copies can be non-blocking.
    auto labels = torch::empty({count}, torch::TensorOptions(torch::kInt64).pinned_memory(pin_));
    auto indices = torch::empty({count}, torch::kInt64);
    float* base = images.data_ptr<float>();
    int64_t* label_out = labels.data_ptr<int64_t>();
    int64_t* index_out = indices.data_ptr<int64_t>();
    const int64_t sample_floats = 3 * h * w;
    BatchResult r;
    int64_t good = 0;
    for (int64_t k = 0; k < count; ++k) {
      const int64_t index = shard[static_cast<size_t>(begin + k)];
      const Sample& s = dataset_.samples[static_cast<size_t>(index)];
      TensorSlot slot;
      slot.data = base + good * sample_floats;
      slot.channel_stride = options_.channels_last ? 1 : h * w;
      slot.pixel_stride = options_.channels_last ? 3 : 1;
      std::string problem;
      try {
        Rng rng({seed_, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index), kRngAugment});
        transform_.apply(decode_image_file(s.path), rng, slot);
      } catch (const BadImage& e) {
        problem = e.what();
      } catch (const cv::Exception& e) {  // an image OpenCV decodes but cannot process (degenerate size)
        problem = at_path(s.path, "cannot transform: " + e.msg);
      }
      if (!problem.empty()) {
        if (!skip_bad_) throw Error(problem + " (data.bad_files: fail)");
        spdlog::warn("data: skipping bad file {}", problem);
        ++r.bad_files;
        r.last_bad = problem;
        continue;
      }
      label_out[good] = s.label;
      index_out[good] = index;
      ++good;
    }
    if (good < count) {
      images = images.narrow(0, 0, good);
      labels = labels.narrow(0, 0, good);
      indices = indices.narrow(0, 0, good);
    }
    r.batch = Batch{images, labels, indices};
    return r;
  }

  // A batch tensor to fill: a recycled one that nobody else references any more, or a new one.
  // A fresh 20 MB tensor per batch costs thousands of page faults (~0.2 ms per 224 px image);
  // recycling makes the loader's memory a fixed set of buffers, like a caching allocator.
  // On CUDA the batch is decoded straight into pinned (page-locked) memory, so the host-to-device
  // copy is one non-blocking DMA with no staging copy; LibTorch's caching host allocator recycles
  // those blocks once the copies that read them have finished, so they are not kept here.
  torch::Tensor batch_buffer(int64_t count, int64_t h, int64_t w) const {
    auto make = [&] {
      auto options = torch::TensorOptions(torch::kFloat32).pinned_memory(pin_);
      return torch::empty({count, 3, h, w},
                          options.memory_format(options_.channels_last ? torch::MemoryFormat::ChannelsLast
                                                                       : torch::MemoryFormat::Contiguous));
    };
    if (pin_) return make();
    std::lock_guard<std::mutex> lock(buffers_mu_);
    for (auto& t : buffers_) {
      // Free: only this list holds the tensor and its storage (a delivered batch or a view of it
      // holds a reference).
      if (t.size(0) == count && t.use_count() == 1 && t.unsafeGetTensorImpl()->storage().use_count() == 1) {
        torch::Tensor reused = t;
        return reused;
      }
    }
    torch::Tensor fresh = make();
    if (buffers_.size() < kMaxBuffers) buffers_.push_back(fresh);
    return fresh;
  }
  static constexpr size_t kMaxBuffers = 64;

  const ImageSourceOptions options_;
  const config::DataConfig data_;
  const uint64_t seed_;
  const Dataset dataset_;
  const Transform transform_;
  const bool skip_bad_;
  const bool pin_;  // pinned host memory only helps (and only works) with CUDA present
  int64_t shard_size_ = 0;
  int64_t epoch_ = 0;
  bool started_ = false;
  SourceStats stats_;
  std::string last_bad_;
  mutable std::mutex buffers_mu_;
  mutable std::vector<torch::Tensor> buffers_;
  std::unique_ptr<OrderedPrefetcher<BatchResult>> pool_;  // last: its threads stop before the rest goes
};

}  // namespace

std::unique_ptr<BatchSource> make_image_source(const config::Config& config, const ImageSourceOptions& options) {
  const auto& d = config.data;
  ClassPolicy policy;
  policy.expected = options.expected_classes;
  policy.allow_missing = options.split == Split::kEval;
  Dataset dataset;
  if (options.split == Split::kTrain) {
    dataset = scan_image_folder(under_root(d.root, d.train_dir), policy);
  } else if (!d.val_ground_truth.empty()) {
    dataset = scan_flat_val(under_root(d.root, d.val_dir), under_root(d.root, d.val_ground_truth),
                            under_root(d.root, d.val_synsets), policy);
  } else {
    dataset = scan_image_folder(under_root(d.root, d.val_dir), policy);
  }
  return std::make_unique<ImageSource>(config, options, std::move(dataset));
}

}  // namespace prom::data
