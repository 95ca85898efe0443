#include "model/weights.h"

#include "core/error.h"

namespace prom::model {

namespace {
// LibTorch keeps BatchNorm's num_batches_tracked as shape [1], PyTorch as a 0-d tensor.
bool is_scalar_like(const torch::Tensor& t) { return t.numel() == 1 && t.dim() <= 1; }
}  // namespace

std::map<std::string, torch::Tensor> state_dict(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : module.named_parameters(true))
    out[item.key()] = item.value().detach().to(torch::kCPU).contiguous().clone();
  for (const auto& item : module.named_buffers(true)) {
    torch::Tensor t = item.value().detach().to(torch::kCPU).contiguous().clone();
    if (is_scalar_like(t)) t = t.reshape({});  // written as torchvision writes it
    out[item.key()] = t;
  }
  return out;
}

void load_state_dict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::string& origin) {
  std::map<std::string, torch::Tensor> targets;
  for (const auto& item : module.named_parameters(true)) targets[item.key()] = item.value();
  for (const auto& item : module.named_buffers(true)) targets[item.key()] = item.value();
  for (const auto& [name, _] : tensors)
    if (!targets.count(name)) throw Error(at_path(origin, "unexpected tensor '" + name + "' (not in the model)"));
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw Error(at_path(origin, "missing tensor '" + name + "'"));
    bool scalars = is_scalar_like(it->second) && is_scalar_like(target);
    if (it->second.sizes() != target.sizes() && !scalars) {
      std::ostringstream msg;
      msg << "tensor '" << name << "' has shape " << it->second.sizes() << " but the model expects "
          << target.sizes();
      throw Error(at_path(origin, msg.str()));
    }
    if (!it->second.is_floating_point() && target.is_floating_point())
      throw Error(at_path(origin, "tensor '" + name + "' is not floating point"));
    target.copy_(it->second.to(target.scalar_type()).reshape(target.sizes()));
  }
}

void save_weights(const torch::nn::Module& module, const std::string& path,
                  const std::map<std::string, std::string>& metadata) {
  io::TensorFile file;
  file.tensors = state_dict(module);
  file.metadata = metadata;
  io::write_safetensors(path, file);
}

void load_weights(torch::nn::Module& module, const std::string& path) {
  io::TensorFile file = io::read_safetensors(path);
  load_state_dict(module, file.tensors, path);
}

}  // namespace prom::model
