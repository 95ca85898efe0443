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

void Optimizer::step() {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double lr = lr_;
  for (auto& np : params_) {
    torch::Tensor& p = np.param;
    torch::Tensor g = p.grad();
    if (!g.defined()) continue;
    const double wd = np.decay ? config_.weight_decay : 0.0;
    if (config_.name == "sgd") {
      // torch.optim.SGD (dampening 0): d = g + wd p; buf = m buf + d; d = nesterov ? d + m buf : buf.
      if (wd != 0) g = g.add(p, wd);
      if (config_.momentum != 0) {
        auto& bufs = state_[np.name];
        auto it = bufs.find("momentum_buffer");
        if (it == bufs.end()) {
          bufs["momentum_buffer"] = g.clone();
        } else {
          it->second.mul_(config_.momentum).add_(g);
        }
        const torch::Tensor& buf = bufs["momentum_buffer"];
        g = config_.nesterov ? g.add(buf, config_.momentum) : buf;
      }
      p.add_(g, -lr);
    } else {
      // torch.optim.AdamW: decoupled decay, then Adam with bias correction.
      if (wd != 0) p.mul_(1.0 - lr * wd);
      torch::Tensor& m = buffer(np.name, "exp_avg", p);
      torch::Tensor& v = buffer(np.name, "exp_avg_sq", p);
      m.mul_(config_.beta1).add_(g, 1.0 - config_.beta1);
      v.mul_(config_.beta2).addcmul_(g, g, 1.0 - config_.beta2);
      const double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(steps_));
      const double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(steps_));
      torch::Tensor denom = (v.sqrt() / std::sqrt(bc2)).add_(config_.eps);
      p.addcdiv_(m, denom, -lr / bc1);
    }
  }
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
