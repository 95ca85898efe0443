#include "train/ema.h"

#include "core/error.h"

namespace prom::train {
namespace {

// Pairs of (shadow, model) tensors, parameters and buffers, by name.
template <class F>
void for_each_pair(torch::nn::Module& shadow, const torch::nn::Module& model, F f) {
  auto params = model.named_parameters(true);
  for (auto& item : shadow.named_parameters(true)) {
    const torch::Tensor* src = params.find(item.key());
    if (src == nullptr) throw Error("EMA: the model has no parameter '" + item.key() + "'");
    f(item.value(), *src);
  }
  auto buffers = model.named_buffers(true);
  for (auto& item : shadow.named_buffers(true)) {
    const torch::Tensor* src = buffers.find(item.key());
    if (src == nullptr) throw Error("EMA: the model has no buffer '" + item.key() + "'");
    f(item.value(), *src);
  }
}

}  // namespace

ModelEma::ModelEma(std::shared_ptr<model::ClassifierModel> shadow, const torch::nn::Module& model, double decay)
    : shadow_(std::move(shadow)), decay_(decay) {
  torch::NoGradGuard no_grad;
  for_each_pair(*shadow_, model, [](torch::Tensor& s, const torch::Tensor& m) { s.copy_(m); });
  for (auto& p : shadow_->parameters()) p.set_requires_grad(false);
  shadow_->eval();
}

void ModelEma::update(const torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for_each_pair(*shadow_, model, [&](torch::Tensor& s, const torch::Tensor& m) {
    if (s.is_floating_point()) s.mul_(decay_).add_(m.detach(), 1.0 - decay_);
    else s.copy_(m);  // counters (num_batches_tracked) follow the model
  });
}

}  // namespace prom::train
