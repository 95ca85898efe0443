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
  // this order, or make_image_source throws prom::Error naming the difference.
  std::vector<std::string> expected_classes;
};

// Builds the train (data.train_dir, train preset) or eval (data.val_dir, eval preset) source from
// config.data. Throws prom::Error for a missing directory, an empty class, a bad ground-truth file.
std::unique_ptr<BatchSource> make_image_source(const config::Config& config, const ImageSourceOptions& options);

}  // namespace prom::data
