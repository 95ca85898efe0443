// The OpenCV image pipeline as a BatchSource (prom_data). The contract between the data pipeline
// and the apps: prom-train and prom-eval call make_image_source() and hand the result to lib/train.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/batch_source.h"

namespace prom::data {

enum class Split { kTrain, kEval };

struct ImageSourceOptions {
  Split split = Split::kTrain;
  int rank = 0, world_size = 1;
  int64_t batch_size = 32;     // per rank
  bool channels_last = false;  // deliver NHWC-strided batches
  bool pin_memory = false;     // when training on CUDA
  // When set (evaluation of a checkpoint, resume), the dataset must have exactly these classes in
  // this order (eval: a subset of them), or make_image_source throws prom::Error naming the difference.
  std::vector<std::string> expected_classes;
};

// Builds the train (data.train_dir, train preset) or eval (data.val_dir, eval preset) source from
// config.data. Throws prom::Error for a missing directory, an empty class, a bad ground-truth file.
// Relative train_dir, val_dir, val_ground_truth and val_synsets are under data.root. With
// expected_classes, an eval folder may hold a subset of the classes (labels map by name, classes()
// is the full expected list); a train folder must hold exactly them.
// Batches: train shards are equal per rank (the remainder of the shuffled dataset and the partial
// last batch are dropped); eval covers every sample once (the last batch may be short). A bad file
// skipped under data.bad_files: skip leaves its batch one shorter. See image_source.cpp.
std::unique_ptr<BatchSource> make_image_source(const config::Config& config, const ImageSourceOptions& options);

}  // namespace prom::data
