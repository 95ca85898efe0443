// The models a run trains with: the network (float weights from model.init, fake quantizers from
// the policy), its EMA shadow and the distillation teacher. Built once, before the first batch.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "model/layer.h"
#include "train/ema.h"
#include "train/run_log.h"

namespace prom::dist {
class Comm;
}

namespace prom::train {

struct TrainModels {
  std::shared_ptr<model::ClassifierModel> net;
  std::unique_ptr<ModelEma> ema;                     // null without train.ema.enabled
  std::shared_ptr<model::ClassifierModel> teacher;  // null without train.distill.teacher
  std::string policy_table;                          // QAT: the policy as quant_policy.txt holds it
};

// A model with the config's architecture, on `device`, in the config's memory format.
std::shared_ptr<model::ClassifierModel> build_model(const config::ModelConfig& c, const torch::Device& device);

// Everything above; `resuming` skips model.init (the checkpoint brings the weights). `classes` is
// the training data's class list, which a teacher's must match. With `comm`, every rank starts
// from rank 0's network (the EMA shadow copies it afterwards).
TrainModels build_train_models(const config::Config& config, const torch::Device& device, bool resuming,
                               const std::vector<std::string>& classes, dist::Comm* comm, RunLog& log);

}  // namespace prom::train
