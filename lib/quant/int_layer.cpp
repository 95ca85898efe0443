#include "quant/int_layer.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "quant/activation_table.h"
#include "quant/arithmetic.h"

namespace prom::quant {
namespace {

ActivationQuantImpl* as_activation(const std::shared_ptr<model::TensorHook>& hook) {
  return hook ? dynamic_cast<ActivationQuantImpl*>(hook.get()) : nullptr;
}

[[noreturn]] void refuse(const std::string& layer, const std::string& what) {
  throw Error("layer " + layer + ": " + what);
}

// A channel whose inputs can move its output by less than this many output steps is constant: its
// codes are zeroed and its output is its folded bias (BN gamma 0, all-zero ternary rows, ...).
constexpr double kConstantChannel = 1.0 / 16;
constexpr int kMaxAccShift = 24;
const double kInt32Limit = std::ldexp(1.0, 31);

// Per-channel quantities in double, before the integer formats are chosen.
struct ChannelPlan {
  std::vector<double> eff;        // |a * s_in * s_w|: real value of one accumulator step
  std::vector<double> bias_real;  // folded bias in accumulator steps (constant channels: in output steps)
  std::vector<bool> constant;
  double max_acc = 0, max_bias = 0;
};

ChannelPlan plan_channels(const model::LayerInfo& l, const LayerQuantIO& io, const QuantizedWeight& q,
                          torch::Tensor* codes) {
  const FoldedAffine folded = folded_affine(l);
  const std::vector<double>& a = folded.scale;
  const std::vector<double>& b = folded.shift;
  auto rows = codes->reshape({l.out_channels, -1});
  torch::Tensor l1_t = rows.abs().sum(1).to(torch::kFloat64).contiguous();
  torch::Tensor s_w_t = q.scale.flatten().to(torch::kCPU, torch::kFloat64).expand({l.out_channels}).contiguous();
  auto l1 = l1_t.accessor<double, 1>();
  auto s_w = s_w_t.accessor<double, 1>();
  const double in_max = io.input_unsigned ? arith::kUnsignedActivation.hi : -arith::kSignedActivation.lo;
  ChannelPlan p;
  p.eff.resize(l.out_channels);
  p.bias_real.resize(l.out_channels);
  p.constant.assign(l.out_channels, false);
  double largest_eff = 0;
  for (int64_t c = 0; c < l.out_channels; ++c) {
    double e = a[c] * io.input_scale * s_w[c];
    if (e < 0) rows[c].neg_();  // a negative BN scale flips the channel: negate its codes
    e = std::abs(e);
    const double acc = l1[c] * in_max;
    const double reach = io.logits ? e * acc : e / io.output_scale * acc;  // output movement (steps or real)
    p.constant[c] = acc == 0 || !(reach >= (io.logits ? 1e-30 : kConstantChannel));
    p.eff[c] = e;
    if (!p.constant[c]) {
      p.max_acc = std::max(p.max_acc, acc);
      largest_eff = std::max(largest_eff, e);
    }
  }
  for (int64_t c = 0; c < l.out_channels; ++c) {
    if (p.constant[c]) {
      rows[c].zero_();
      // A constant logit keeps the layer's step; a constant feature is its bias in output steps.
      if (io.logits) p.eff[c] = largest_eff > 0 ? largest_eff : 1.0;
    }
    p.bias_real[c] = p.constant[c] && !io.logits ? b[c] / io.output_scale : b[c] / p.eff[c];
    if (!std::isfinite(p.bias_real[c])) refuse(l.name, "folded bias is not finite");
    p.max_bias = std::max(p.max_bias, std::abs(p.bias_real[c]));
  }
  return p;
}

// Fractional bits of the bias: as many as keep acc * 2^f + bias inside int32 for every input.
int64_t choose_acc_shift(const model::LayerInfo& l, const ChannelPlan& p) {
  const double need = p.max_acc + p.max_bias + 1;
  if (need >= kInt32Limit)
    refuse(l.name, "accumulator plus folded bias (" + std::to_string(static_cast<int64_t>(need)) +
                       " steps) overflows int32; the layer cannot be exported (check its BatchNorm scales)");
  int64_t f = 0;
  while (f < kMaxAccShift && need * std::ldexp(1.0, static_cast<int>(f + 1)) < kInt32Limit) ++f;
  return f;
}

void fill_requantization(const model::LayerInfo& l, const LayerQuantIO& io, const ChannelPlan& p, IntLayer* out) {
  out->multiplier = torch::empty({l.out_channels}, torch::kInt32);
  out->right_shift = torch::empty({l.out_channels}, torch::kInt32);
  auto mult = out->multiplier.accessor<int32_t, 1>();
  auto shift = out->right_shift.accessor<int32_t, 1>();
  for (int64_t c = 0; c < l.out_channels; ++c) {
    const double m = std::ldexp(p.constant[c] ? 1.0 : p.eff[c] / io.output_scale, -static_cast<int>(out->acc_shift));
    if (!arith::representable_multiplier(m))
      refuse(l.name, "requantization multiplier " + std::to_string(m) + " of channel " + std::to_string(c) +
                         " is out of range (output scale " + std::to_string(io.output_scale) + ")");
    const auto full = arith::quantize_multiplier(m);
    const auto fm = arith::shorten_multiplier(full, io.multiplier_bits);
    if (fm.multiplier == 0 && full.multiplier != 0)
      refuse(l.name, "requantization multiplier " + std::to_string(m) + " of channel " + std::to_string(c) +
                         " does not fit " + std::to_string(io.multiplier_bits) + " significant bits");
    mult[c] = fm.multiplier;
    shift[c] = fm.right_shift;
  }
  const arith::CodeGrid grid = arith::activation_grid(io.output_unsigned);
  out->clamp_lo = grid.lo;
  out->clamp_hi = grid.hi;
  if (io.relu || io.relu6) out->clamp_lo = std::max(grid.lo, 0);
  if (io.relu6) out->clamp_hi = std::min(grid.hi, arith::relu6_code(io.output_scale, grid));
}

}  // namespace

FoldedAffine folded_affine(const model::LayerInfo& l) {
  FoldedAffine f;
  f.scale.assign(l.out_channels, 1.0);
  f.shift.assign(l.out_channels, 0.0);
  if (l.bn) {
    auto gamma = l.bn->weight.detach().to(torch::kCPU, torch::kFloat64);
    auto beta = l.bn->bias.detach().to(torch::kCPU, torch::kFloat64);
    auto mean = l.bn->running_mean.to(torch::kCPU, torch::kFloat64);
    auto var = l.bn->running_var.to(torch::kCPU, torch::kFloat64);
    torch::Tensor scale = gamma / torch::sqrt(var + l.bn->options.eps());
    torch::Tensor shift = beta - scale * mean;
    auto sa = scale.accessor<double, 1>();
    auto sb = shift.accessor<double, 1>();
    for (int64_t c = 0; c < l.out_channels; ++c) {
      f.scale[c] = sa[c];
      f.shift[c] = sb[c];
    }
  } else if (l.linear && l.linear->bias.defined()) {
    torch::Tensor bias = l.linear->bias.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    auto bb = bias.accessor<double, 1>();
    for (int64_t c = 0; c < l.out_channels; ++c) f.shift[c] = bb[c];
  }
  return f;
}

std::vector<ActivationQuantImpl*> tensor_quantizers(model::ClassifierModel& net) {
  const auto& graph = net.graph();
  const auto& layers = net.layers();
  std::vector<ActivationQuantImpl*> q(graph.size() + 1, nullptr);
  auto assign = [&](int tensor, ActivationQuantImpl* a) {
    if (!a) return;
    if (q[tensor] && q[tensor] != a)
      throw Error("model graph: tensor " + std::to_string(tensor) + " has two activation quantizers");
    q[tensor] = a;
  };
  std::vector<const model::GraphNode*> grid_pools;  // pools whose codes stay on their input's grid
  for (const auto& node : graph) {
    switch (node.kind) {
      case model::NodeKind::kConv: assign(node.inputs[0], as_activation(layers[node.layer].conv->input_hook)); break;
      case model::NodeKind::kLinear: assign(node.inputs[0], as_activation(layers[node.layer].linear->input_hook)); break;
      case model::NodeKind::kAdd: assign(node.inputs[1], as_activation(net.branch_hook(node.inputs[1]))); break;
      case model::NodeKind::kGlobalAvgPool:
        if (net.tensor_hook(node.output)) {  // squeeze-and-excitation: the input is quantized by its block
          grid_pools.push_back(&node);
          break;
        }
        // The pooling quantizer quantizes the feature map and yields pooled codes on the same grid.
        assign(node.inputs[0], as_activation(net.pool_hook()));
        assign(node.output, as_activation(net.pool_hook()));
        break;
      case model::NodeKind::kMul:
        assign(node.inputs[0], as_activation(net.tensor_hook(node.inputs[0])));
        assign(node.inputs[1], as_activation(net.tensor_hook(node.inputs[1])));
        break;
    }
  }
  for (const auto* pool : grid_pools) assign(pool->output, q[pool->inputs[0]]);
  return q;
}

std::vector<ActivationQuantImpl*> preactivation_quantizers(model::ClassifierModel& net) {
  std::vector<ActivationQuantImpl*> pre;
  for (const auto& node : net.graph()) {
    const auto& act = node.layer >= 0 ? net.layers()[node.layer].activation_layer : model::ActivationLayer(nullptr);
    pre.push_back(act && needs_table(node.activation) ? as_activation(act->input_hook()) : nullptr);
  }
  return pre;
}

torch::Tensor multiplier_per_weight_step(const model::LayerInfo& l, double s_in, double s_out) {
  const std::vector<double> a = folded_affine(l).scale;
  torch::Tensor f = torch::empty({l.out_channels}, torch::kFloat64);
  auto acc = f.accessor<double, 1>();
  for (int64_t c = 0; c < l.out_channels; ++c) acc[c] = std::abs(a[c]) * (s_in / s_out);
  return f;
}

int requant_multiplier_bits(const config::QuantConfig& config) {
  if (config.requant == "power_of_two") return 1;
  if (config.requant == "short") return config.requant_bits;
  return 31;
}

LayerQuantIO layer_io(const model::GraphNode& node, const std::vector<ActivationQuantImpl*>& quantizers,
                      const ActivationQuantImpl* preactivation, const std::string& name, int multiplier_bits) {
  LayerQuantIO io;
  io.multiplier_bits = multiplier_bits;
  const ActivationQuantImpl* in = quantizers.at(node.inputs[0]);
  if (!in || !in->initialized()) refuse(name, "its input is not quantized (int8 activations needed)");
  io.input_scale = in->scale();
  io.input_unsigned = in->is_unsigned();
  const ActivationQuantImpl* out = quantizers.at(node.output);
  io.logits = node.kind == model::NodeKind::kLinear && !out;
  if (io.logits) return io;
  if (needs_table(node.activation)) {
    // The layer writes pre-activation codes; a table maps them to the output grid.
    if (!preactivation || !preactivation->initialized())
      refuse(name, std::string("its ") + model::activation_name(node.activation) +
                       " input is not quantized (int8 pre-activation codes needed)");
    io.output_scale = preactivation->scale();
    io.output_unsigned = preactivation->is_unsigned();
    return io;
  }
  if (!out || !out->initialized()) refuse(name, "its output is not quantized (int8 activations needed)");
  io.output_scale = out->scale();
  io.output_unsigned = out->is_unsigned();
  io.relu = node.activation == model::Activation::kRelu;
  io.relu6 = node.activation == model::Activation::kRelu6;
  return io;
}

IntLayer lower_layer(const model::LayerInfo& l, const LayerQuantIO& io) {
  torch::NoGradGuard no_grad;
  auto hook = l.conv ? l.conv->weight_hook : l.linear->weight_hook;
  auto* wq = dynamic_cast<WeightQuantizer*>(hook.get());
  if (!wq) refuse(l.name, "has float weights (int8 or ternary weights needed)");
  const torch::Tensor& w = l.conv ? l.conv->weight : l.linear->weight;
  if (auto* fitted = dynamic_cast<Int8WeightImpl*>(wq); fitted && fitted->fits_multiplier())
    fitted->set_multiplier_per_step(io.logits ? torch::Tensor()
                                              : multiplier_per_weight_step(l, io.input_scale, io.output_scale));
  QuantizedWeight q = wq->quantize(w.detach());
  torch::Tensor codes = q.codes.to(torch::kCPU, torch::kInt8).clone();

  IntLayer out;
  out.name = l.name;
  out.is_linear = l.is_linear;
  out.ternary = wq->ternary();
  const ChannelPlan p = plan_channels(l, io, q, &codes);
  out.acc_shift = choose_acc_shift(l, p);
  out.weight = codes;
  out.bias = torch::empty({l.out_channels}, torch::kInt32);
  out.weight_scale = torch::empty({l.out_channels}, torch::kFloat32);
  for (int64_t c = 0; c < l.out_channels; ++c) {
    out.bias[c] = static_cast<int32_t>(std::nearbyint(std::ldexp(p.bias_real[c], static_cast<int>(out.acc_shift))));
    out.weight_scale[c] = static_cast<float>(p.eff[c] / io.input_scale);
  }
  out.max_abs_accumulator = static_cast<int64_t>(p.max_acc);
  out.max_abs_biased = static_cast<int64_t>(std::ceil((p.max_acc + p.max_bias) * std::ldexp(1.0, static_cast<int>(out.acc_shift)))) + 1;
  if (io.logits) {
    out.output_scale = torch::empty({l.out_channels}, torch::kFloat32);
    for (int64_t c = 0; c < l.out_channels; ++c)
      out.output_scale[c] = static_cast<float>(std::ldexp(p.eff[c], -static_cast<int>(out.acc_shift)));
  } else {
    fill_requantization(l, io, p, &out);
  }
  return out;
}

IntLayer lower_node(const model::LayerInfo& info, const model::GraphNode& node,
                    const std::vector<ActivationQuantImpl*>& quantizers, ActivationQuantImpl* preactivation,
                    int multiplier_bits) {
  const LayerQuantIO io = layer_io(node, quantizers, preactivation, info.name, multiplier_bits);
  IntLayer l = lower_layer(info, io);
  if (!io.logits && needs_table(node.activation)) {
    ActivationQuantImpl* out = quantizers.at(node.output);
    if (!out || !out->initialized()) refuse(info.name, "its output is not quantized (int8 activations needed)");
    l.table = activation_table(node.activation, *preactivation, *out);
  }
  return l;
}

}  // namespace prom::quant
