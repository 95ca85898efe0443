#include "data/tensor_source.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cstdio>
#include <random>

#include "core/error.h"

namespace prom::data {
namespace {

// splitmix64: decorrelates nearby (seed, epoch) pairs before they seed the shuffle.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

TensorSource::TensorSource(torch::Tensor images, torch::Tensor labels, std::vector<std::string> classes,
                           const TensorSourceOptions& options)
    : images_(std::move(images)), labels_(std::move(labels)), classes_(std::move(classes)), options_(options) {
  if (images_.dim() != 4 || images_.size(1) != 3) throw Error("tensor source: images must be [N, 3, H, W]");
  if (labels_.dim() != 1 || labels_.size(0) != images_.size(0))
    throw Error("tensor source: labels must be [N] with N = number of images");
  if (options_.world_size < 1 || options_.rank < 0 || options_.rank >= options_.world_size)
    throw Error("tensor source: rank must be in [0, world_size)");
  if (options_.batch_size < 1) throw Error("tensor source: batch_size must be positive");
  images_ = images_.to(torch::kFloat32).contiguous();
  labels_ = labels_.to(torch::kInt64).contiguous();
  shard_size_ = images_.size(0) / options_.world_size;
  if (shard_size_ == 0) throw Error("tensor source: fewer samples than ranks");
}

std::vector<int64_t> TensorSource::epoch_order(int64_t epoch) const {
  const int64_t n = images_.size(0);
  std::vector<int64_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  if (options_.shuffle) {
    // Fisher-Yates with mt19937_64 (whose output the standard fixes), not std::shuffle (whose
    // algorithm is the library's): the same order on every platform.
    std::mt19937_64 rng(mix(mix(options_.seed) ^ static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; --i) std::swap(all[i], all[rng() % static_cast<uint64_t>(i + 1)]);
  }
  std::vector<int64_t> mine;
  mine.reserve(shard_size_);
  for (int64_t k = 0; k < shard_size_; ++k) mine.push_back(all[k * options_.world_size + options_.rank]);
  return mine;
}

void TensorSource::start_epoch(int64_t epoch) {
  order_ = epoch_order(epoch);
  cursor_ = 0;
  stats_ = SourceStats{};
}

int64_t TensorSource::batches_per_epoch() const {
  const int64_t b = options_.batch_size;
  return options_.drop_last ? shard_size_ / b : (shard_size_ + b - 1) / b;
}

std::optional<Batch> TensorSource::next() {
  const size_t remaining = order_.size() - cursor_;
  if (remaining == 0) return std::nullopt;
  const size_t take = std::min<size_t>(remaining, static_cast<size_t>(options_.batch_size));
  if (options_.drop_last && take < static_cast<size_t>(options_.batch_size)) {
    cursor_ = order_.size();
    return std::nullopt;
  }
  torch::Tensor idx = torch::from_blob(order_.data() + cursor_, {static_cast<int64_t>(take)}, torch::kInt64).clone();
  cursor_ += take;
  Batch b;
  b.images = images_.index_select(0, idx);
  if (options_.channels_last) b.images = b.images.contiguous(torch::MemoryFormat::ChannelsLast);
  b.labels = labels_.index_select(0, idx);
  b.indices = idx;
  stats_.samples += static_cast<int64_t>(take);
  return b;
}

std::vector<std::string> synthetic_class_names(int64_t classes) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < classes; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "class_%03lld", static_cast<long long>(i));
    names.emplace_back(buf);
  }
  return names;
}

std::unique_ptr<TensorSource> make_synthetic_source(const config::Config& config, bool eval,
                                                    const TensorSourceOptions& options) {
  const auto& s = config.data.synthetic;
  const uint64_t seed = static_cast<uint64_t>(config.run.seed);
  torch::NoGradGuard no_grad;
  // Prototypes: 4x4 random patterns, upsampled, so that classes differ in smooth, learnable ways.
  at::Generator proto_gen = at::detail::createCPUGenerator(mix(seed ^ 0x70726f746fULL));
  torch::Tensor coarse = torch::randn({s.classes, 3, 4, 4}, proto_gen, torch::kFloat32);
  torch::Tensor protos = torch::nn::functional::interpolate(
      coarse, torch::nn::functional::InterpolateFuncOptions()
                  .size(std::vector<int64_t>{s.image_size, s.image_size})
                  .mode(torch::kBilinear)
                  .align_corners(false));
  const int64_t n = eval ? s.eval_samples : s.samples;
  at::Generator gen = at::detail::createCPUGenerator(mix(seed ^ (eval ? 0x6576616cULL : 0x747261696eULL)));
  torch::Tensor labels = torch::arange(n, torch::kInt64).remainder(s.classes);
  torch::Tensor images =
      protos.index_select(0, labels) + s.noise * torch::randn({n, 3, s.image_size, s.image_size}, gen, torch::kFloat32);
  TensorSourceOptions o = options;
  o.seed = mix(seed ^ (eval ? 1 : 0));
  return std::make_unique<TensorSource>(images, labels, synthetic_class_names(s.classes), o);
}

}  // namespace prom::data
