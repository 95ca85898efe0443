// The evaluation at the end of an epoch: the model and its EMA shadow on the evaluation data, each
// rank scoring its shard and the sums making the global numbers.
#pragma once
#include <optional>

#include "data/batch_source.h"
#include "train/evaluate.h"
#include "train/train_models.h"

namespace prom::dist {
class Comm;
}

namespace prom::train {

struct EpochEval {
  EvalResult model;
  std::optional<EvalResult> ema;  // with train.ema.enabled
};

EpochEval evaluate_epoch(TrainModels& models, data::BatchSource& source, const config::Config& config,
                         const torch::Device& device, dist::Comm* comm);

}  // namespace prom::train
