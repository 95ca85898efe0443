#include "train/ema.h"

#include <set>

#include "core/error.h"

namespace prom::train {
namespace {

// The state-dict names of every parameter and buffer that belongs to a fake quantizer.
std::set<std::string> quantizer_tensors(const torch::nn::Module& model) {
  std::set<std::string> out;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (dynamic_cast<const model::TensorHook*>(item.value().get()) == nullptr) continue;
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) out.insert(item.key() + "." + p.key());
    for (const auto& b : item.value()->named_buffers(/*recurse=*/false)) out.insert(item.key() + "." + b.key());
  }
  return out;
}

struct Pair {
  torch::Tensor shadow, model;
  bool parameter;
  bool quantizer;
};

// (shadow, model) pairs of parameters and buffers, by name.
std::vector<Pair> pairs(torch::nn::Module& shadow, const torch::nn::Module& model) {
  const std::set<std::string> quant = quantizer_tensors(shadow);
  std::vector<Pair> out;
  auto params = model.named_parameters(true);
  for (auto& item : shadow.named_parameters(true)) {
    const torch::Tensor* src = params.find(item.key());
    if (src == nullptr) throw Error("EMA: the model has no parameter '" + item.key() + "'");
    out.push_back({item.value(), *src, true, quant.count(item.key()) > 0});
  }
  auto buffers = model.named_buffers(true);
  for (auto& item : shadow.named_buffers(true)) {
    const torch::Tensor* src = buffers.find(item.key());
    if (src == nullptr) throw Error("EMA: the model has no buffer '" + item.key() + "'");
    out.push_back({item.value(), *src, false, quant.count(item.key()) > 0});
  }
  return out;
}

}  // namespace

bool is_quantizer_state(const torch::nn::Module& model, const std::string& name) {
  return quantizer_tensors(model).count(name) > 0;
}

ModelEma::ModelEma(std::shared_ptr<model::ClassifierModel> shadow, const torch::nn::Module& model, double decay)
    : shadow_(std::move(shadow)), decay_(decay) {
  reset(model);
  for (auto& p : shadow_->parameters()) p.set_requires_grad(false);
  shadow_->eval();
}

void ModelEma::reset(const torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : pairs(*shadow_, model)) p.shadow.copy_(p.model);
}

// One multi-tensor op per kind (torch's _foreach_*): on CPU it runs the same per-tensor kernels as
// a loop, bit for bit; on CUDA it launches a few kernels instead of two per tensor.
void ModelEma::update(const torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> averaged, targets;
  for (auto& p : pairs(*shadow_, model)) {
    const bool average = p.shadow.is_floating_point() && !(p.quantizer && !p.parameter);
    if (average) {
      averaged.push_back(p.shadow);
      targets.push_back(p.model.detach());
    } else {
      p.shadow.copy_(p.model);  // counters (num_batches_tracked), quantizer ranges and flags follow the model
    }
  }
  if (averaged.empty()) return;
  at::_foreach_mul_(averaged, decay_);
  at::_foreach_add_(averaged, targets, 1.0 - decay_);
}

void ModelEma::sync_quantizers(const torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : pairs(*shadow_, model))
    if (p.quantizer) p.shadow.copy_(p.model);
}

}  // namespace prom::train
