#include "app/sources.h"

#include "core/error.h"
#include "data/tensor_source.h"
#include "train/checkpoint.h"
#ifdef PROM_WITH_IMAGE_SOURCE
#include "data/image_source.h"
#endif

namespace prom::app {

std::unique_ptr<data::BatchSource> make_source(const config::Config& config, const SourceRequest& request) {
  if (config.data.synthetic.enabled) {
    data::TensorSourceOptions o;
    o.batch_size = request.batch_size;
    o.shuffle = !request.eval;
    o.drop_last = !request.eval;
    o.channels_last = request.channels_last;
    o.rank = request.rank;
    o.world_size = request.world_size;
    auto source = data::make_synthetic_source(config, request.eval, o);
    train::check_classes(request.expected_classes, source->classes(), request.classes_origin);
    return source;
  }
#ifdef PROM_WITH_IMAGE_SOURCE
  if (config.data.root.empty())
    throw ConfigKeyError("data.root: not set: name the dataset folder (holding data.train_dir and data.val_dir), "
                         "or set data.synthetic.enabled: true");
  data::ImageSourceOptions o;
  o.split = request.eval ? data::Split::kEval : data::Split::kTrain;
  o.batch_size = request.batch_size;
  o.channels_last = request.channels_last;
  o.pin_memory = request.pin_memory;
  o.rank = request.rank;
  o.world_size = request.world_size;
  o.expected_classes = request.expected_classes;
  return data::make_image_source(config, o);
#else
  throw ConfigError("data: this build has no image pipeline (prom_data); set data.synthetic.enabled: true");
#endif
}

}  // namespace prom::app
