#include "quant/activation_table.h"

#include "core/error.h"

namespace prom::quant {

bool needs_table(model::Activation f) {
  return f != model::Activation::kNone && f != model::Activation::kRelu && f != model::Activation::kRelu6;
}

torch::Tensor activation_table(model::Activation f, ActivationQuantImpl& pre, ActivationQuantImpl& out) {
  if (pre.is_unsigned()) throw Error("activation table: the pre-activation grid must be signed");
  torch::NoGradGuard no_grad;
  const auto device = pre.scale_tensor().device();
  torch::Tensor codes = torch::arange(-128, 128, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  // What the pre-activation fake quantizer outputs for each code: code * step in float32.
  torch::Tensor values = pre.quantize(codes * pre.scale_tensor());
  torch::Tensor y = out.quantize(model::apply_activation(f, values));
  return torch::round(y / out.scale_tensor()).to(torch::kCPU, torch::kInt32);
}

torch::Tensor lookup_codes(const torch::Tensor& codes, const torch::Tensor& table) {
  torch::Tensor t = table.to(codes.device(), codes.scalar_type());
  return t.index({(codes + 128).to(torch::kLong)});
}

}  // namespace prom::quant
