// Straight-through estimator: the value of `quantized`, the gradient of the identity on `latent`.
// (latent + (quantized - latent).detach() would be off by float rounding from the quantized values.)
#pragma once
#include <torch/torch.h>

namespace prom::quant {

struct StraightThrough : public torch::autograd::Function<StraightThrough> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& latent,
                               const torch::Tensor& quantized) {
    return quantized.clone();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grad) {
    return {grad[0], torch::Tensor()};
  }
};

}  // namespace prom::quant
