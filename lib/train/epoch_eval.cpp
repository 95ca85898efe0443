#include "train/epoch_eval.h"

#include "distributed/comm.h"

namespace prom::train {
namespace {

// Loss, top-1 and top-5 averaged over every rank's samples.
void reduce_over_ranks(EvalResult& e, dist::Comm* comm) {
  if (comm == nullptr) return;
  const double m = static_cast<double>(e.samples);
  auto g = comm->sum({e.loss * m, e.top1 * m, e.top5 * m, m});
  e.samples = static_cast<int64_t>(g[3]);
  e.loss = g[3] > 0 ? g[0] / g[3] : 0;
  e.top1 = g[3] > 0 ? g[1] / g[3] : 0;
  e.top5 = g[3] > 0 ? g[2] / g[3] : 0;
}

}  // namespace

EpochEval evaluate_epoch(TrainModels& models, data::BatchSource& source, const config::Config& config,
                         const torch::Device& device, dist::Comm* comm) {
  const bool channels_last = config.model.channels_last;
  const int64_t classes = config.model.num_classes;
  EpochEval out;
  out.model = evaluate(*models.net, source, device, channels_last, classes);
  reduce_over_ranks(out.model, comm);
  if (models.ema) {
    out.ema = evaluate(models.ema->shadow(), source, device, channels_last, classes);
    reduce_over_ranks(*out.ema, comm);
  }
  return out;
}

}  // namespace prom::train
