// Fake quantizers: forward rounds to the integer grid the exported model uses, backward is a
// straight-through estimator. They plug into model layers as TensorHooks (lib/model/layer.h) and
// always compute in fp32, whatever precision the rest of the step uses.
#pragma once
#include "config/quant_config.h"
#include "model/layer.h"

namespace prom::quant {

// Integer codes and scales of a quantized weight: w ~= codes * scale (scale broadcast per output
// channel, shape [out, 1, ...], or a single element for per-tensor).
struct QuantizedWeight {
  torch::Tensor codes;  // int8: {-1, 0, 1} for ternary, [-127, 127] for int8
  torch::Tensor scale;  // float32
};

// A 0/1 flag kept in a [1] buffer (so that it is saved and loaded with the model), read from the
// tensor only when it may have changed (its version counter or storage differs: fill_, a state
// load's copy_, set_data, to()): a forward costs no device -> host read once it is set.
class CachedFlag {
 public:
  explicit CachedFlag(torch::Tensor buffer) : buffer_(std::move(buffer)) {}
  bool get() const;
  void set();  // writes the tensor only when the flag was clear
 private:
  torch::Tensor buffer_;
  mutable int64_t version_ = -1;
  mutable const void* data_ = nullptr;
  mutable bool value_ = false;
};

class WeightQuantizer : public model::TensorHook {
 public:
  // Codes and scales of `w` as the exporter writes them (no gradient).
  virtual QuantizedWeight quantize(const torch::Tensor& w) = 0;
  virtual std::string describe() const = 0;
  virtual bool ternary() const = 0;
};

// Ternary weights {-s, 0, +s} per group (tensor or output channel).
//   absmean (BitNet b1.58): s = mean|W|, codes = clip(round(W / s), -1, 1)
//   twn (Li & Liu 2016):    delta = t mean|W| (t = 0.7 in TWN; `threshold`), codes = sign(W) [|W| > delta],
//                           s = mean of |W| above delta
// Backward: identity straight-through (dL/dW = dL/dWq); the float latent W is what the optimizer updates.
class TernaryWeightImpl : public WeightQuantizer {
 public:
  // max_per_sign > 0 (weight.accumulator: int16): per output channel, only the max_per_sign
  // largest |W| of each sign keep a non-zero code.
  TernaryWeightImpl(bool twn, bool per_channel, double threshold = 0.7, int64_t max_per_sign = 0)
      : twn_(twn), per_channel_(per_channel), threshold_(threshold), max_per_sign_(max_per_sign) {}
  torch::Tensor forward(const torch::Tensor& w) override;
  QuantizedWeight quantize(const torch::Tensor& w) override;
  std::string describe() const override;
  bool ternary() const override { return true; }

 private:
  bool twn_, per_channel_;
  double threshold_;
  int64_t max_per_sign_;
};

// Symmetric int8 weights: codes in [-127, 127], scale = max|W| / 127 per output channel or tensor,
// through torch's fake_quantize_per_{channel,tensor}_affine (same grid, rounding and STE). With
// `learned`, the scale is a parameter trained by LSQ (Esser et al. 2020) with its gradient scaling.
// With `fit_bits` (weight.scale: fit_multiplier, per channel) each channel's scale is instead the
// smallest one >= max|W| / 127 that makes its requantization multiplier f_c * scale a number of
// `fit_bits` significant bits (fitted_weight_scale), f_c being set by set_multiplier_per_step.
class Int8WeightImpl : public WeightQuantizer {
 public:
  Int8WeightImpl(bool per_channel, bool learned, int64_t out_channels, int fit_bits = 0);
  torch::Tensor forward(const torch::Tensor& w) override;
  QuantizedWeight quantize(const torch::Tensor& w) override;
  std::string describe() const override;
  bool ternary() const override { return false; }
  bool fits_multiplier() const { return fit_bits_ > 0; }
  // f_c = |BN scale_c| * s_in / s_out ([out] float64): the requantization multiplier per unit of
  // weight scale. Set from the current BatchNorm and activation scales before every forward
  // (quant/requant_gains.h) and by the lowering (int_layer.h), like the gains: not state. Undefined:
  // the max scale.
  void set_multiplier_per_step(torch::Tensor f) { multiplier_per_step_ = std::move(f); }

 private:
  torch::Tensor scale_of(const torch::Tensor& w);  // [groups]
  bool per_channel_, learned_;
  int fit_bits_ = 0;
  torch::Tensor multiplier_per_step_;
  torch::Tensor scale_;        // LSQ parameter [groups]
  torch::Tensor initialized_;  // LSQ: 0 until the first forward sets the scale from the weights
  std::unique_ptr<CachedFlag> init_flag_;
};

// Per-tensor int8 activations: unsigned [0, 255] where the input is non-negative (after ReLU6),
// signed [-128, 127] elsewhere; zero point 0. The range comes from an EMA observer of max|x| that
// can be frozen, or is a learned step (LSQ).
class ActivationQuantImpl : public model::TensorHook {
 public:
  ActivationQuantImpl(bool is_unsigned, bool learned, double momentum);
  torch::Tensor forward(const torch::Tensor& x) override;
  // Fake-quantizes with the current range, never observing.
  torch::Tensor quantize(const torch::Tensor& x);
  void set_observing(bool on) { observing_ = on; }
  // The producer's ReLU6 runs here, inside the fake-quant pass (quant/fake_quant_kernel.h), and the
  // producer skips it (model::DeferrableRelu6): same values and gradients, two passes fewer per step.
  // Only for unsigned observer quantizers (the LSQ path has no fused kernel).
  void set_fused_relu6(bool on);
  bool fused_relu6() const { return fused_relu6_; }
  // Gains of short requantization multipliers (quant/requant_gains.h), so that the simulated forward
  // computes what the integer model does: `producer` multiplies the input per channel ([C]) or as a
  // whole ([1]) before observing and rounding (the producing layer's multiplier), `output` multiplies
  // the fake-quantized result (a residual branch's share of its add). Undefined: 1. Not state: they
  // are recomputed from the scales before every forward.
  void set_gains(torch::Tensor producer, torch::Tensor output) {
    producer_gain_ = std::move(producer);
    output_gain_ = std::move(output);
  }
  const torch::Tensor& producer_gain() const { return producer_gain_; }
  bool observing() const { return observing_; }
  bool is_unsigned() const { return unsigned_; }
  bool learned() const { return learned_; }
  int64_t qmin() const { return unsigned_ ? 0 : -128; }
  int64_t qmax() const { return unsigned_ ? 255 : 127; }
  // The step size the exported model uses: the float32 value of one integer step (the forward's).
  double scale() const;
  torch::Tensor scale_tensor() const;  // the same, as the [1] float tensor the forward uses
  bool initialized() const;
  std::string describe() const;

 private:
  bool unsigned_, learned_;
  double momentum_;
  bool observing_ = true;
  bool fused_relu6_ = false;
  torch::Tensor producer_gain_, output_gain_;  // float32 on the CPU, see set_gains
  torch::Tensor range_;        // buffer [1]: EMA of max|x| (observer) ...
  torch::Tensor step_;         // ... or parameter [1]: the learned step (LSQ)
  torch::Tensor initialized_;  // buffer [1]: 0 until the first batch has been seen
  std::unique_ptr<CachedFlag> init_flag_;
};

// Quantizes the last feature map (uint8 after ReLU6) and pools it the way the integer engine does:
// integer sum over H*W, division rounded half to even, same scale. Returns [N, C, 1, 1]; the
// gradient is that of the float average of the quantized map.
class PooledActivationQuantImpl : public ActivationQuantImpl {
 public:
  using ActivationQuantImpl::ActivationQuantImpl;
  torch::Tensor forward(const torch::Tensor& x) override;
};

// Rounds to another quantizer's grid without observing (fake quantization with its current range):
// squeeze-and-excitation's pooled input, which integer pooling keeps on the grid of the pooled codes.
// The tensor quantizer of the pooled values is `source` (int_layer.h: tensor_quantizers).
class GridSnapImpl : public model::TensorHook {
 public:
  explicit GridSnapImpl(ActivationQuantImpl* source) : source_(source) {}
  torch::Tensor forward(const torch::Tensor& x) override { return source_->quantize(x); }

 private:
  ActivationQuantImpl* source_;  // owned by the same block
};

// The smallest scale >= `scale` whose multiplier `scale * f` has `bits` significant bits, elementwise
// (float64; `scale` where f <= 0 or bits >= 31).
torch::Tensor fitted_weight_scale(const torch::Tensor& scale, const torch::Tensor& f, int bits);

// Factories from the policy's config. `multiplier_bits`: requant_multiplier_bits of the policy (the
// bits a fit_multiplier scale fits).
std::shared_ptr<WeightQuantizer> make_weight_quantizer(const config::WeightQuantConfig& c, int64_t out_channels,
                                                       int multiplier_bits = 31);
std::shared_ptr<ActivationQuantImpl> make_activation_quantizer(const config::ActQuantConfig& c, bool is_unsigned,
                                                               double momentum);

}  // namespace prom::quant
