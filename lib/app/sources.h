// The data source a binary trains or evaluates on: the synthetic tensors of data.synthetic, or the
// OpenCV image pipeline (prom_data). Lives in prom_app so that lib/train sees only BatchSource.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/batch_source.h"

namespace prom::app {

struct SourceRequest {
  bool eval = false;
  int64_t batch_size = 32;  // per rank
  int rank = 0, world_size = 1;  // data-parallel: this rank's shard of the data
  bool channels_last = false;
  bool pin_memory = false;
  // When set, the data must have exactly these classes in this order (prom::Error otherwise).
  std::vector<std::string> expected_classes;
  std::string classes_origin = "the expected class list";  // where expected_classes came from, for errors
};

std::unique_ptr<data::BatchSource> make_source(const config::Config& config, const SourceRequest& request);

}  // namespace prom::app
