#include "train/train_models.h"

#include <map>
#include <set>

#include "distributed/comm.h"
#include "model/registry.h"
#include "model/weights.h"
#include "quant/policy.h"
#include "train/checkpoint.h"

namespace prom::train {
namespace {

std::shared_ptr<model::ClassifierModel> build_teacher(const config::Config& config, const torch::Device& device,
                                                      const std::vector<std::string>& classes, RunLog& log) {
  const auto& d = config.train.distill;
  auto teacher = build_model(config.model, device);
  std::vector<std::string> teacher_classes;
  auto tensors = load_model_tensors(d.teacher, &teacher_classes);
  model::load_state_dict(*teacher, tensors, d.teacher);
  check_classes(teacher_classes, classes, d.teacher);
  teacher->eval();
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  log.info("distilling from " + d.teacher + " (T " + config::format_number(d.temperature) + ", alpha " +
           config::format_number(d.alpha) + ")");
  return teacher;
}

// True when `tensors` has a name the module's state lacks (quantizer state in a float model).
bool has_tensors_beyond(const torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors) {
  std::set<std::string> names;
  for (const auto& p : module.named_parameters()) names.insert(p.key());
  for (const auto& b : module.named_buffers()) names.insert(b.key());
  for (const auto& [name, tensor] : tensors)
    if (!names.count(name)) return true;
  return false;
}

}  // namespace

std::shared_ptr<model::ClassifierModel> build_model(const config::ModelConfig& c, const torch::Device& device) {
  auto m = model::create_model(c);
  m->to(device);
  if (c.channels_last) model::to_channels_last(*m);
  return m;
}

TrainModels build_train_models(const config::Config& config, const torch::Device& device, bool resuming,
                               const std::vector<std::string>& classes, dist::Comm* comm, RunLog& log) {
  TrainModels m;
  m.net = build_model(config.model, device);
  std::map<std::string, torch::Tensor> init;
  bool init_is_qat = false;  // the file holds quantizer state too (a QAT run's checkpoint)
  if (!config.model.init.empty() && !resuming) {
    std::vector<std::string> init_classes;
    init = load_model_tensors(config.model.init, &init_classes);
    init_is_qat = config.quant.enabled && has_tensors_beyond(*m.net, init);
    if (!init_is_qat) {
      model::load_state_dict(*m.net, init, config.model.init);
      log.info("initial weights: " + config.model.init);
    }
  }
  // Quantization-aware training: fake quantizers go in after the float weights are loaded (they
  // have no place in a float weights file) and before the optimizer sees the parameters (LSQ steps).
  if (config.quant.enabled) {
    auto assignments = quant::attach_quantizers(*m.net, config.quant, device);
    m.policy_table = quant::format_policy(assignments);
    log.info("quantization policy (saved as quant_policy.txt):\n" + m.policy_table);
  }
  // A QAT checkpoint (e.g. fine-tuning a PROM run with another requant setting) loads with its
  // observers' ranges once the policy's quantizers are in place; a policy that does not match it is
  // a one-line error naming the first tensor that differs.
  if (init_is_qat) {
    model::load_state_dict(*m.net, init, config.model.init);
    log.info("initial weights and quantizer state: " + config.model.init);
  }
  if (comm != nullptr) dist::broadcast_module(*comm, *m.net);  // rank 0's initial weights and buffers
  if (config.train.ema.enabled) {
    auto shadow = build_model(config.model, device);
    if (config.quant.enabled) quant::attach_quantizers(*shadow, config.quant, device);
    m.ema = std::make_unique<ModelEma>(shadow, *m.net, config.train.ema.decay);
  }
  if (!config.train.distill.teacher.empty()) m.teacher = build_teacher(config, device, classes, log);
  return m;
}

}  // namespace prom::train
