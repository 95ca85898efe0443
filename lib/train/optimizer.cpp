#include "train/optimizer.h"

#include <cmath>

#include "core/error.h"

namespace prom::train {

std::vector<NamedParam> param_groups(torch::nn::Module& model, const config::OptimConfig& config) {
  std::vector<NamedParam> out;
  for (auto& item : model.named_parameters(true)) {
    if (!item.value().requires_grad()) continue;
    bool decay = !(config.no_decay_bn_bias && item.value().dim() <= 1);
    out.push_back({item.key(), item.value(), decay});
  }
  return out;
}

Optimizer::Optimizer(std::vector<NamedParam> params, const config::OptimConfig& config)
    : params_(std::move(params)), config_(config), lr_(config.lr) {}

void Optimizer::zero_grad() {
  for (auto& p : params_)
    if (p.param.grad().defined()) p.param.mutable_grad() = torch::Tensor();  // set_to_none, as PyTorch 2.x
}

torch::Tensor& Optimizer::buffer(const std::string& param, const std::string& name, const torch::Tensor& like) {
  torch::Tensor& t = state_[param][name];
  if (!t.defined()) t = torch::zeros_like(like);  // keeps the parameter's memory format and device
  return t;
}

// The parameters that have a gradient and the given weight-decay flag, with their gradients.
Optimizer::Group Optimizer::group(bool decay) const {
  Group g;
  for (const auto& np : params_) {
    if (np.decay != decay || !np.param.grad().defined()) continue;
    g.names.push_back(np.name);
    g.params.push_back(np.param);
    g.grads.push_back(np.param.grad());
  }
  return g;
}

// Updates with torch's multi-tensor ops (_foreach_*): on CPU they run the per-tensor kernels of a
// loop over the parameters, so the numbers are bit for bit those of torch.optim's for-loop
// implementation; on CUDA they launch a handful of kernels per step instead of several per tensor.
void Optimizer::step() {
  torch::NoGradGuard no_grad;
  ++steps_;
  for (bool decay : {true, false}) {
    Group g = group(decay);
    if (g.params.empty()) continue;
    const double wd = decay ? config_.weight_decay : 0.0;
    if (config_.name == "sgd") sgd_step(g, wd);
    else adamw_step(g, wd);
  }
}

// torch.optim.SGD (dampening 0): d = g + wd p; buf = m buf + d; d = nesterov ? d + m buf : buf; p -= lr d.
void Optimizer::sgd_step(Group& g, double wd) {
  std::vector<torch::Tensor> d = wd != 0 ? at::_foreach_add(g.grads, g.params, wd) : g.grads;
  if (config_.momentum != 0) {
    std::vector<torch::Tensor> bufs, existing, existing_d;
    for (size_t i = 0; i < d.size(); ++i) {
      auto& slot = state_[g.names[i]];
      auto it = slot.find("momentum_buffer");
      if (it == slot.end()) {
        bufs.push_back(slot["momentum_buffer"] = d[i].clone());  // the first step: buf = d
      } else {
        bufs.push_back(it->second);
        existing.push_back(it->second);
        existing_d.push_back(d[i]);
      }
    }
    if (!existing.empty()) {
      at::_foreach_mul_(existing, config_.momentum);
      at::_foreach_add_(existing, existing_d);
    }
    d = config_.nesterov ? at::_foreach_add(d, bufs, config_.momentum) : bufs;
  }
  at::_foreach_add_(g.params, d, -lr_);
}

// torch.optim.AdamW: decoupled decay, then Adam with bias correction.
void Optimizer::adamw_step(Group& g, double wd) {
  if (wd != 0) at::_foreach_mul_(g.params, 1.0 - lr_ * wd);
  std::vector<torch::Tensor> m, v;
  for (size_t i = 0; i < g.params.size(); ++i) {
    m.push_back(buffer(g.names[i], "exp_avg", g.params[i]));
    v.push_back(buffer(g.names[i], "exp_avg_sq", g.params[i]));
  }
  at::_foreach_mul_(m, config_.beta1);
  at::_foreach_add_(m, g.grads, 1.0 - config_.beta1);
  at::_foreach_mul_(v, config_.beta2);
  at::_foreach_addcmul_(v, g.grads, g.grads, 1.0 - config_.beta2);
  const double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(steps_));
  std::vector<torch::Tensor> denom = at::_foreach_sqrt(v);
  at::_foreach_div_(denom, std::sqrt(bc2));
  at::_foreach_add_(denom, config_.eps);
  at::_foreach_addcdiv_(g.params, m, denom, -lr_ / bc1);
}

std::map<std::string, torch::Tensor> Optimizer::state_tensors() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [param, bufs] : state_)
    for (const auto& [name, t] : bufs) out["optim/" + param + "/" + name] = t.detach().to(torch::kCPU).contiguous().clone();
  return out;
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& tensors, int64_t steps,
                           const std::string& origin) {
  std::map<std::string, const NamedParam*> by_name;
  for (const auto& p : params_) by_name[p.name] = &p;
  state_.clear();
  torch::NoGradGuard no_grad;
  for (const auto& [key, t] : tensors) {
    if (key.rfind("optim/", 0) != 0) continue;
    auto slash = key.rfind('/');
    std::string param = key.substr(6, slash - 6), name = key.substr(slash + 1);
    auto it = by_name.find(param);
    if (slash <= 6 || it == by_name.end())
      throw Error(at_path(origin, "optimizer state '" + key + "' names no parameter of the model"));
    const torch::Tensor& target = it->second->param;
    if (t.sizes() != target.sizes()) throw Error(at_path(origin, "optimizer state '" + key + "' has the wrong shape"));
    state_[param][name] = torch::empty_like(target).copy_(t.to(target.scalar_type()));
  }
  steps_ = steps;
}

}  // namespace prom::train
