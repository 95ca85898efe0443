#include "quant/quantizers.h"

#include "core/error.h"
#include "core/host_read.h"
#include "quant/fake_quant_kernel.h"
#include "quant/straight_through.h"

#include <cmath>
#include <stdexcept>

namespace prom::quant {
namespace {

// Per-group view: [groups, elements per group].
torch::Tensor grouped(const torch::Tensor& w, bool per_channel) {
  return per_channel ? w.reshape({w.size(0), -1}) : w.reshape({1, -1});
}

// Shape that broadcasts a [groups] vector against w.
std::vector<int64_t> broadcast_shape(const torch::Tensor& w, bool per_channel) {
  std::vector<int64_t> shape(w.dim(), 1);
  if (per_channel) shape[0] = w.size(0);
  return shape;
}

constexpr double kEps = 1e-8;

// A channels-last tensor as the dense NHWC view of the same memory: full reductions (max, aminmax)
// then read it in place instead of first copying it to NCHW (what they do with channels-last input).
torch::Tensor dense_view(const torch::Tensor& x) {
  if (x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(torch::MemoryFormat::ChannelsLast))
    return x.permute({0, 2, 3, 1});
  return x;
}

// torch's fake_quantize_per_tensor_affine (same values, same straight-through mask), through our
// vectorized CPU kernel (quant/fake_quant_kernel.h). The backward is where(mask, grad, 0), not
// torch's grad * mask: identical for finite gradients up to the sign of zeros, and one pass fewer.
struct FakeQuantPerTensor : public torch::autograd::Function<FakeQuantPerTensor> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& scale,
                               const torch::Tensor& zero_point, int64_t qmin, int64_t qmax, bool relu6) {
    FakeQuantOutput out = fake_quantize_per_tensor(x, scale, zero_point, qmin, qmax, relu6);
    ctx->save_for_backward({out.mask});
    return out.values;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    torch::Tensor mask = ctx->get_saved_variables()[0];
    return {masked_gradient(grad[0], mask), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

// Rows of ternary codes ([out, fan-in]) with at most `k` non-zero codes of each sign: those of the
// largest |w| stay.
torch::Tensor cap_codes_per_sign(const torch::Tensor& w, torch::Tensor codes, int64_t k) {
  if (k <= 0 || codes.size(1) <= k) return codes;
  const torch::Tensor abs = w.abs();
  for (int sign : {1, -1}) {
    // No host-side test of whether any row exceeds k (a device sync per layer and step): topk over
    // a row with k or fewer codes of the sign keeps them all.
    const torch::Tensor of_sign = codes == sign;
    const torch::Tensor kept_index = std::get<1>(torch::where(of_sign, abs, torch::full_like(abs, -1)).topk(k, 1));
    const torch::Tensor kept = torch::zeros_like(of_sign).scatter_(1, kept_index, true);
    codes = torch::where(of_sign & kept.logical_not(), torch::zeros_like(codes), codes);
  }
  return codes;
}

}  // namespace

bool CachedFlag::get() const {
  const int64_t version = static_cast<int64_t>(buffer_._version());
  const void* data = buffer_.data_ptr();
  if (version != version_ || data != data_) {
    value_ = host_item<float>(buffer_) != 0;
    version_ = static_cast<int64_t>(buffer_._version());
    data_ = data;
  }
  return value_;
}

void CachedFlag::set() {
  if (get()) return;
  buffer_.fill_(1);
  value_ = true;
  version_ = static_cast<int64_t>(buffer_._version());
  data_ = buffer_.data_ptr();
}

// ---- ternary ----

QuantizedWeight TernaryWeightImpl::quantize(const torch::Tensor& w_in) {
  torch::NoGradGuard no_grad;
  torch::Tensor w = w_in.to(torch::kFloat32);
  torch::Tensor g = grouped(w, per_channel_);
  torch::Tensor abs = g.abs();
  torch::Tensor codes, scale;
  if (twn_) {
    torch::Tensor delta = threshold_ * abs.mean(1, true);
    codes = torch::sign(g) * (abs > delta);
  } else {
    scale = abs.mean(1, true).clamp_min(kEps);
    codes = torch::round(g * scale.reciprocal()).clamp(-1, 1);  // the rounding rule of quant/arithmetic.h
  }
  const auto rows = [&](const torch::Tensor& t) { return t.reshape({w.size(0), -1}); };
  codes = cap_codes_per_sign(rows(w), rows(codes), max_per_sign_).reshape(g.sizes());
  if (twn_) {  // the scale of the codes kept: the mean |W| where they are non-zero
    torch::Tensor mask = codes != 0;
    torch::Tensor count = mask.sum(1, true).clamp_min(1);
    scale = ((abs * mask).sum(1, true) / count).clamp_min(kEps);
  }
  auto shape = broadcast_shape(w, per_channel_);
  return {codes.reshape(w.sizes()).to(torch::kInt8), scale.reshape(shape)};
}

torch::Tensor TernaryWeightImpl::forward(const torch::Tensor& w) {
  QuantizedWeight q = quantize(w);
  torch::Tensor wq = q.codes.to(torch::kFloat32) * q.scale;
  return StraightThrough::apply(w.to(torch::kFloat32), wq);
}

std::string TernaryWeightImpl::describe() const {
  std::string threshold;
  if (twn_ && threshold_ != 0.7) threshold = " threshold " + config::format_number(threshold_);
  const std::string cap = max_per_sign_ > 0 ? " at most " + std::to_string(max_per_sign_) + " per sign" : "";
  return std::string("ternary ") + (twn_ ? "twn" : "absmean") + threshold + (per_channel_ ? " per-channel" : " per-tensor") +
         cap;
}

// ---- int8 weights ----

Int8WeightImpl::Int8WeightImpl(bool per_channel, bool learned, int64_t out_channels, int fit_bits)
    : per_channel_(per_channel), learned_(learned), fit_bits_(fit_bits > 0 && fit_bits < 31 ? fit_bits : 0) {
  if (learned_) {
    scale_ = register_parameter("scale", torch::ones({per_channel_ ? out_channels : 1}));
    initialized_ = register_buffer("initialized", torch::zeros({1}));
    init_flag_ = std::make_unique<CachedFlag>(initialized_);
  }
}

torch::Tensor Int8WeightImpl::scale_of(const torch::Tensor& w) {
  torch::NoGradGuard no_grad;
  torch::Tensor scale = (grouped(w.to(torch::kFloat32), per_channel_).abs().amax(1) / 127.0).clamp_min(kEps);
  if (!fit_bits_ || !multiplier_per_step_.defined() || multiplier_per_step_.numel() != scale.numel()) return scale;
  return fitted_weight_scale(scale, multiplier_per_step_.to(scale.device()), fit_bits_).to(torch::kFloat32);
}

torch::Tensor fitted_weight_scale(const torch::Tensor& scale, const torch::Tensor& f_in, int bits) {
  torch::NoGradGuard no_grad;
  torch::Tensor s = scale.to(torch::kFloat64);
  if (bits >= 31) return s;
  torch::Tensor f = f_in.to(s.device(), torch::kFloat64);
  torch::Tensor fit = f > 0;
  f = torch::where(fit, f, torch::ones_like(f));  // channels without a multiplier keep `scale`
  torch::Tensor m = s * f;
  // m = mantissa * 2^e with the mantissa in [1, 2); keep `bits` significant bits, rounding up.
  torch::Tensor unit = torch::exp2(torch::floor(torch::log2(m)) - (bits - 1));  // one step of the last kept bit
  return torch::where(fit, torch::ceil(m / unit) * unit / f, s);
}

torch::Tensor Int8WeightImpl::forward(const torch::Tensor& w_in) {
  torch::Tensor w = w_in.to(torch::kFloat32);
  if (learned_) {
    if (!init_flag_->get()) {
      torch::NoGradGuard no_grad;
      scale_.copy_(scale_of(w));
      init_flag_->set();
    }
    // LSQ gradient scaling: 1 / sqrt(elements per scale * Qp).
    double per_scale = static_cast<double>(w.numel()) / scale_.numel();
    double grad_factor = 1.0 / std::sqrt(per_scale * 127.0);
    torch::Tensor zp = torch::zeros_like(scale_);
    scale_.data().clamp_min_(kEps);
    if (per_channel_)
      return torch::_fake_quantize_learnable_per_channel_affine(w, scale_, zp, 0, -127, 127, grad_factor);
    return torch::_fake_quantize_learnable_per_tensor_affine(w, scale_, zp, -127, 127, grad_factor);
  }
  torch::Tensor scale = scale_of(w);
  if (per_channel_) {
    torch::Tensor zp = torch::zeros({scale.numel()}, torch::TensorOptions().dtype(torch::kInt32).device(w.device()));
    return torch::fake_quantize_per_channel_affine(w, scale, zp, 0, -127, 127);
  }
  torch::Tensor zp = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt32).device(w.device()));
  return torch::fake_quantize_per_tensor_affine(w, scale, zp, -127, 127);
}

QuantizedWeight Int8WeightImpl::quantize(const torch::Tensor& w_in) {
  torch::NoGradGuard no_grad;
  torch::Tensor w = w_in.to(torch::kFloat32);
  torch::Tensor scale = learned_ ? scale_.detach().clamp_min(kEps) : scale_of(w);
  scale = scale.reshape(broadcast_shape(w, per_channel_));
  // torch's fake_quantize rounding, which the forward uses: nearbyint(w * (1 / scale)).
  torch::Tensor codes = torch::round(w * scale.reciprocal()).clamp(-127, 127).to(torch::kInt8);
  return {codes, scale};
}

std::string Int8WeightImpl::describe() const {
  const std::string scale =
      learned_ ? " LSQ" : fit_bits_ ? " fit to " + std::to_string(fit_bits_) + "-bit multipliers" : " max";
  return std::string("int8 ") + (per_channel_ ? "per-channel" : "per-tensor") + scale;
}

// ---- activations ----

ActivationQuantImpl::ActivationQuantImpl(bool is_unsigned, bool learned, double momentum)
    : unsigned_(is_unsigned), learned_(learned), momentum_(momentum) {
  range_ = register_buffer("range", torch::zeros({1}));
  initialized_ = register_buffer("initialized", torch::zeros({1}));
  init_flag_ = std::make_unique<CachedFlag>(initialized_);
  if (learned_) step_ = register_parameter("step", torch::ones({1}));
}

bool ActivationQuantImpl::initialized() const { return init_flag_->get(); }

torch::Tensor ActivationQuantImpl::scale_tensor() const {
  if (learned_) return step_.detach().clamp_min(kEps);
  return (range_ / static_cast<double>(qmax())).clamp_min(kEps);
}

double ActivationQuantImpl::scale() const { return host_item<float>(scale_tensor()); }

namespace {
// `x` times a gain of set_gains: per channel (dim 1) or one value.
torch::Tensor apply_gain(const torch::Tensor& x, const torch::Tensor& gain) {
  if (!gain.defined()) return x;
  torch::Tensor g = gain.to(x.device(), /*non_blocking=*/true);
  if (g.numel() > 1) {
    std::vector<int64_t> shape(x.dim(), 1);
    shape.at(1) = g.numel();
    g = g.view(shape);
  }
  return x * g;
}
}  // namespace

torch::Tensor ActivationQuantImpl::forward(const torch::Tensor& x_in) {
  torch::Tensor x = apply_gain(x_in.to(torch::kFloat32), producer_gain_);
  bool first = !initialized();
  if (is_training() && (observing_ || first)) {
    torch::NoGradGuard no_grad;
    // One pass over x: max|x| = max(max x, -min x), exactly, without an |x| temporary.
    torch::Tensor batch_range;
    if (unsigned_) {
      // max(relu6(x)) = relu6(max(x)) exactly: ReLU6 is monotone (see set_fused_relu6).
      batch_range = fused_relu6_ ? dense_view(x).max().clamp(0, 6) : dense_view(x).max().clamp_min(0);
    } else {
      auto [lo, hi] = torch::aminmax(dense_view(x));
      batch_range = torch::maximum(hi, lo.neg());
    }
    batch_range = batch_range.reshape({1});
    if (first) range_.copy_(batch_range);
    else range_.mul_(1.0 - momentum_).add_(batch_range * momentum_);
    if (learned_ && first) step_.copy_((range_ / static_cast<double>(qmax())).clamp_min(kEps));
    init_flag_->set();
  }
  return apply_gain(quantize(x), output_gain_);
}

torch::Tensor ActivationQuantImpl::quantize(const torch::Tensor& x_in) {
  torch::Tensor x = x_in.to(torch::kFloat32);
  if (!initialized()) return fused_relu6_ ? torch::hardtanh(x, 0, 6) : x;  // eval before any training batch
  if (learned_) {
    double grad_factor = 1.0 / std::sqrt(static_cast<double>(x.numel()) * qmax());
    step_.data().clamp_min_(kEps);
    return torch::_fake_quantize_learnable_per_tensor_affine(x, step_, torch::zeros_like(step_), qmin(), qmax(),
                                                             grad_factor);
  }
  torch::Tensor scale = (range_ / static_cast<double>(qmax())).clamp_min(kEps);
  torch::Tensor zp = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt32).device(x.device()));
  return FakeQuantPerTensor::apply(x, scale, zp, qmin(), qmax(), fused_relu6_);
}

torch::Tensor PooledActivationQuantImpl::forward(const torch::Tensor& x) {
  torch::Tensor xq = ActivationQuantImpl::forward(x);
  torch::Tensor mean = xq.mean({2, 3}, true);
  if (!initialized()) return mean;
  torch::Tensor pooled;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor s = scale_tensor();
    torch::Tensor sums = torch::round(xq / s).sum({2, 3}, true);  // exact integers in float32
    // An exact integer ratio rounds half to even here, as the engine's integer division does.
    pooled = torch::round(sums / static_cast<double>(x.size(2) * x.size(3))) * s;
  }
  return StraightThrough::apply(mean, pooled);
}

void ActivationQuantImpl::set_fused_relu6(bool on) {
  if (on && (!unsigned_ || learned_))
    throw std::logic_error("only an unsigned observer quantizer can take over a ReLU6");
  fused_relu6_ = on;
}

std::string ActivationQuantImpl::describe() const {
  return std::string(unsigned_ ? "uint8" : "int8") + (learned_ ? " LSQ" : " EMA");
}

std::shared_ptr<WeightQuantizer> make_weight_quantizer(const config::WeightQuantConfig& c, int64_t out_channels,
                                                       int multiplier_bits) {
  bool per_channel = c.granularity == "per_channel";
  if (c.type == "ternary") {
    if (c.method != "twn" && c.threshold != 0.7)
      throw Error("quant rule: weight.threshold applies to method twn, not " + c.method);
    return std::make_shared<TernaryWeightImpl>(c.method == "twn", per_channel, c.threshold,
                                               c.accumulator == "int16" ? config::kInt16TernaryPerSign : 0);
  }
  if (c.threshold != 0.7) throw Error("quant rule: weight.threshold applies to ternary twn weights, not " + c.type);
  if (c.type == "int8")
    return std::make_shared<Int8WeightImpl>(per_channel, c.learned, out_channels,
                                            c.scale == "fit_multiplier" ? multiplier_bits : 0);
  return nullptr;
}

std::shared_ptr<ActivationQuantImpl> make_activation_quantizer(const config::ActQuantConfig& c, bool is_unsigned,
                                                               double momentum) {
  if (c.type == "int8") return std::make_shared<ActivationQuantImpl>(is_unsigned, c.learned, momentum);
  return nullptr;
}

}  // namespace prom::quant
