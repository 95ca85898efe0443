// SGD (momentum, Nesterov) and AdamW with the update rules of torch.optim, written here so that the
// state has names: every buffer is keyed by its parameter's state-dict name, which is what the
// checkpoint stores ("optim/<param name>/<buffer>") and what makes resume exact and readable.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "config/config.h"

namespace prom::train {

struct NamedParam {
  std::string name;
  torch::Tensor param;
  bool decay = true;  // weight decay applies
};

// The model's parameters with their weight-decay group. With optim.no_decay_bn_bias, BatchNorm
// weights and biases and every bias (all the 0-d and 1-d parameters) get no decay, as in
// torchvision's --norm-weight-decay 0 --bias-weight-decay 0.
std::vector<NamedParam> param_groups(torch::nn::Module& model, const config::OptimConfig& config);

class Optimizer {
 public:
  Optimizer(std::vector<NamedParam> params, const config::OptimConfig& config);

  void set_lr(double lr) { lr_ = lr; }
  double lr() const { return lr_; }
  void zero_grad();
  // One update from the current gradients (parameters without a gradient are skipped).
  void step();
  int64_t steps() const { return steps_; }

  const std::vector<NamedParam>& params() const { return params_; }

  // Buffers as "optim/<param name>/<buffer>" (CPU, contiguous); the step count travels separately.
  std::map<std::string, torch::Tensor> state_tensors() const;
  // Restores buffers saved by state_tensors(); a buffer for an unknown parameter or with the wrong
  // shape is a prom::Error naming `origin`.
  void load_state(const std::map<std::string, torch::Tensor>& tensors, int64_t steps, const std::string& origin);

 private:
  struct Group {  // parameters updated alike (same weight decay), with their gradients
    std::vector<std::string> names;
    std::vector<torch::Tensor> params, grads;
  };
  Group group(bool decay) const;
  void sgd_step(Group& g, double wd);
  void adamw_step(Group& g, double wd);
  torch::Tensor& buffer(const std::string& param, const std::string& name, const torch::Tensor& like);

  std::vector<NamedParam> params_;
  config::OptimConfig config_;
  double lr_;
  int64_t steps_ = 0;
  std::map<std::string, std::map<std::string, torch::Tensor>> state_;  // param -> buffer -> tensor
};

}  // namespace prom::train
