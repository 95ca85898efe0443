// One pass over an evaluation source: loss, top-1, top-5 and per-class accuracy. Shared by the
// trainer (every train.eval_every epochs) and prom-eval.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "data/batch_source.h"
#include "model/layer.h"

namespace prom::train {

struct EvalResult {
  double loss = 0;  // mean cross-entropy (no label smoothing)
  double top1 = 0, top5 = 0;  // percent
  int64_t samples = 0;
  std::vector<int64_t> class_correct, class_total;  // top-1, by label
  double seconds = 0;
};

// Scores any logits function (float, fake-quant or integer engine) over one epoch of `source`.
EvalResult evaluate(const std::function<torch::Tensor(const torch::Tensor& images)>& logits_of,
                    data::BatchSource& source, int64_t num_classes);

// Runs the model in eval mode (restoring its mode afterwards) over one epoch of `source`.
EvalResult evaluate(model::ClassifierModel& model, data::BatchSource& source, const torch::Device& device,
                    bool channels_last, int64_t num_classes);

}  // namespace prom::train
