// Activations other than ReLU and ReLU6 (hardswish, hardsigmoid, SiLU, sigmoid) in integers: the
// layer before requantizes to a signed pre-activation grid, and a 256-entry table maps each
// pre-activation code to an output code. The table is built from the very float computation the
// fake-quant forward performs on those values (dequantize, the activation as torch computes it,
// the output quantizer), so a table lookup gives what the simulated forward gives, code for code.
#pragma once
#include <torch/torch.h>

#include "model/layer.h"
#include "quant/quantizers.h"

namespace prom::quant {

// True where the integer model computes `f` by a table (not none, ReLU or ReLU6, which are clamps).
bool needs_table(model::Activation f);

// T[code + 128] = output code of f(code * s_pre) on `out`'s grid, for code in [-128, 127]:
// int32 [256]. `pre` is signed (a pre-activation quantizer), both are initialized.
torch::Tensor activation_table(model::Activation f, ActivationQuantImpl& pre, ActivationQuantImpl& out);

// codes (float32 or float64 integers in [-128, 127], any shape) -> table[codes + 128], same dtype.
torch::Tensor lookup_codes(const torch::Tensor& codes, const torch::Tensor& table);

}  // namespace prom::quant
