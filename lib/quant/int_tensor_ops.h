// The integer operations of lib/quant/arithmetic.h over whole tensors, for the exact fake-quant
// forward: codes travel as float32 tensors holding integers (exact: |code| <= 255), so that
// LibTorch's convolutions compute the integer accumulators. CPU tensors go through parallel loops
// over the scalar functions; other devices through equivalent int64 tensor ops.
#pragma once
#include <torch/torch.h>

#include "quant/arithmetic.h"
#include "quant/int_layer.h"

namespace prom::quant {

// clamp(nearbyint(x * (1 / scale))) on `grid`, as float32 codes (the input image's quantization).
torch::Tensor quantize_codes(const torch::Tensor& x, float scale, arith::CodeGrid grid);

// Per output channel (dim 1), arith::requantize of integer-valued accumulators (float32 or float64,
// any dense layout; values are rounded to the nearest integer first): float32 codes.
// float32 accumulators (|acc| < 2^24, as every exact float32 sum is) on CPUs with AVX-512 (F, DQ)
// take a vector loop, 8 values per step; `false` forces the portable loop (tests compare the two bit
// for bit).
torch::Tensor requantize_codes(const torch::Tensor& acc, const IntLayer& layer);
void set_requantize_avx512(bool allowed);

// A residual add of two code tensors (arith::add_requantize).
struct IntAdd {
  int64_t mult_a = 0, mult_b = 0;
  int shift = 0;
  int32_t clamp_lo = 0, clamp_hi = 0;
};
// multiplier_bits: significant bits kept in each multiplier (requant_multiplier_bits).
IntAdd lower_add(double scale_a, double scale_b, double scale_out, bool out_unsigned, int multiplier_bits = 31);
torch::Tensor add_codes(const torch::Tensor& a, const torch::Tensor& b, const IntAdd& add);

// Squeeze-and-excitation scaling (arith::mul_requantize): features [N, C, H, W] times gate [N, C, 1, 1].
struct IntMul {
  arith::FixedPointMultiplier multiplier;  // s_features * s_gate / s_out
  int32_t clamp_lo = 0, clamp_hi = 0;
};
// Throws prom::Error when the multiplier is out of range or does not fit `multiplier_bits`.
IntMul lower_mul(double scale_features, double scale_gate, double scale_out, bool out_unsigned, int multiplier_bits = 31);
torch::Tensor mul_codes(const torch::Tensor& features, const torch::Tensor& gate, const IntMul& mul);

// Global average pooling of codes [N, C, H, W] -> [N, C]: integer sums divided with ties to even.
torch::Tensor average_pool_codes(const torch::Tensor& codes);

}  // namespace prom::quant
