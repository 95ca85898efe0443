#include "export/exporter.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "infer/fixed_point.h"
#include "prom/version.h"
#include "quant/quantizers.h"

namespace prom::exporter {
namespace {

quant::ActivationQuantImpl* activation_quantizer(const std::shared_ptr<model::TensorHook>& hook) {
  if (!hook) return nullptr;
  if (auto* a = dynamic_cast<quant::ActivationQuantImpl*>(hook.get())) return a;
  return nullptr;
}

int32_t saturate_int32(double v) {
  double r = std::nearbyint(v);
  if (r > std::numeric_limits<int32_t>::max()) return std::numeric_limits<int32_t>::max();
  if (r < std::numeric_limits<int32_t>::min()) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(r);
}

[[noreturn]] void not_quantized(const model::LayerInfo& l, const std::string& what) {
  throw Error("cannot export: layer " + l.name + " (" + model::role_name(l.role) + ") has " + what +
              "; the integer model needs int8/ternary weights and int8 inputs on every layer");
}

}  // namespace

IntModel export_model(model::ClassifierModel& net, const ExportOptions& options) {
  torch::NoGradGuard no_grad;
  net.eval();
  const auto& layers = net.layers();
  IntModel m;
  m.arch = net.arch();
  m.prom_version = PROM_VERSION;
  m.classes = options.classes;
  m.input_size = options.input_size;
  m.preprocess = options.preprocess;
  m.ternary_packing = options.ternary_packing;

  auto* pool_quant = activation_quantizer(net.pool_hook());
  auto input_quant = [&](size_t i) {
    const auto& l = layers[i];
    // The classifier's input is quantized by the pooling quantizer.
    auto* q = l.conv ? activation_quantizer(l.conv->input_hook) : pool_quant;
    if (!q) not_quantized(l, "a float input");
    return q;
  };
  auto weight_quant = [&](size_t i) {
    const auto& l = layers[i];
    auto* q = dynamic_cast<quant::WeightQuantizer*>((l.conv ? l.conv->weight_hook : l.linear->weight_hook).get());
    if (!q) not_quantized(l, "float weights");
    return q;
  };

  int64_t h = options.input_size, w = options.input_size;
  m.activations.push_back({input_quant(0)->scale(), input_quant(0)->is_unsigned(), layers[0].in_channels, h, w});
  int cur = 0;
  std::vector<int> input_act(layers.size(), -1);

  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    input_act[i] = cur;
    double s_in = m.activations[cur].scale;
    auto q = weight_quant(i)->quantize(l.conv ? l.conv->weight : l.linear->weight);
    torch::Tensor codes = q.codes.clone();
    torch::Tensor s_w = q.scale.flatten().to(torch::kFloat64).expand({l.out_channels}).contiguous();

    IntOp op;
    op.name = l.name;
    op.role = l.role;
    op.in_channels = l.in_channels;
    op.out_channels = l.out_channels;
    op.kernel = l.kernel;
    op.stride = l.stride;
    op.padding = l.padding;
    op.groups = l.groups;
    op.ternary = weight_quant(i)->ternary();
    op.relu6 = l.relu6;
    op.input = cur;

    // Per output channel: real output = a_c * s_in * s_w[c] * sum(codes * x) + b_c.
    torch::Tensor a, b;
    if (l.bn) {
      auto var = l.bn->running_var.to(torch::kFloat64);
      a = l.bn->weight.to(torch::kFloat64) / torch::sqrt(var + l.bn->options.eps());
      b = l.bn->bias.to(torch::kFloat64) - a * l.bn->running_mean.to(torch::kFloat64);
    } else {
      a = torch::ones({l.out_channels}, torch::kFloat64);
      b = l.linear && l.linear->bias.defined() ? l.linear->bias.to(torch::kFloat64)
                                               : torch::zeros({l.out_channels}, torch::kFloat64);
    }
    torch::Tensor bias = torch::empty({l.out_channels}, torch::kInt32);
    torch::Tensor weight_scale = torch::empty({l.out_channels}, torch::kFloat32);
    std::vector<double> eff(l.out_channels), bias_real(l.out_channels);
    auto codes_rows = codes.reshape({l.out_channels, -1});
    double max_bias = 0;
    for (int64_t c = 0; c < l.out_channels; ++c) {
      double ac = a[c].item<double>();
      double e = ac * s_in * s_w[c].item<double>();
      if (e < 0) {  // a negative BN scale flips the channel: negate its codes, keep the multiplier positive
        codes_rows[c].neg_();
        e = -e;
      }
      e = std::max(e, 1e-12);
      eff[c] = e;
      bias_real[c] = b[c].item<double>() / e;
      max_bias = std::max(max_bias, std::abs(bias_real[c]));
      weight_scale[c] = static_cast<float>(std::abs(ac) * s_w[c].item<double>());
    }
    // Fractional bits for the bias: the largest accumulator (every input at its extreme) plus the
    // bias must stay below 2^30 after the shift. Rounding the bias to whole accumulator steps would
    // cost up to half a step times the multiplier at every output.
    if (!l.is_linear) {
      double max_in = m.activations[cur].is_unsigned ? 255 : 128;
      double max_acc = codes_rows.abs().sum(1).max().item<double>() * max_in;
      int64_t f = 0;
      while (f < 24 && (max_acc + max_bias + 1) * std::ldexp(1.0, static_cast<int>(f + 1)) < std::ldexp(1.0, 30)) ++f;
      op.acc_shift = f;
    }
    for (int64_t c = 0; c < l.out_channels; ++c) bias[c] = saturate_int32(std::ldexp(bias_real[c], static_cast<int>(op.acc_shift)));
    op.weight = codes.to(torch::kInt8);
    op.bias = bias;
    op.weight_scale = weight_scale;

    if (l.is_linear) {
      // Global average pooling first: integer sums, rounded division, same scale.
      if (!pool_quant) not_quantized(l, "no quantizer before global average pooling");
      IntOp pool;
      pool.kind = OpKind::kAvgPool;
      pool.input = cur;
      pool.output = static_cast<int>(m.activations.size());
      m.activations.push_back({m.activations[cur].scale, m.activations[cur].is_unsigned,
                               m.activations[cur].channels, 1, 1});
      m.ops.push_back(pool);
      op.kind = OpKind::kLinear;
      op.input = pool.output;
      torch::Tensor out_scale = torch::empty({l.out_channels}, torch::kFloat32);
      for (int64_t c = 0; c < l.out_channels; ++c) out_scale[c] = static_cast<float>(eff[c]);
      op.output_scale = out_scale;
      op.output = static_cast<int>(m.activations.size());
      m.activations.push_back({1.0, false, l.out_channels, 1, 1});  // int32 logits
      m.ops.push_back(op);
      m.output = op.output;
      cur = op.output;
      continue;
    }

    // The scale this conv's output is requantized to: whoever reads it next.
    double s_out;
    bool out_unsigned;
    if (l.before_residual_add) {
      auto* r = activation_quantizer(l.residual_hook ? l.residual_hook() : nullptr);
      if (!r) not_quantized(l, "no quantizer before its residual add");
      s_out = r->scale();
      out_unsigned = r->is_unsigned();
    } else if (i + 1 < layers.size() && layers[i + 1].is_linear) {
      if (!pool_quant) not_quantized(layers[i + 1], "no quantizer before global average pooling");
      s_out = pool_quant->scale();
      out_unsigned = pool_quant->is_unsigned();
    } else if (i + 1 < layers.size()) {
      s_out = input_quant(i + 1)->scale();
      out_unsigned = input_quant(i + 1)->is_unsigned();
    } else {
      throw Error("cannot export: the model does not end with a linear classifier");
    }
    torch::Tensor mult = torch::empty({l.out_channels}, torch::kInt32);
    torch::Tensor shift = torch::empty({l.out_channels}, torch::kInt32);
    for (int64_t c = 0; c < l.out_channels; ++c) {
      auto qm = infer::quantize_multiplier(std::ldexp(eff[c] / s_out, -static_cast<int>(op.acc_shift)));
      mult[c] = qm.multiplier;
      shift[c] = std::max(qm.shift, -31);
    }
    op.multiplier = mult;
    op.shift = shift;
    h = (h + 2 * l.padding - l.kernel) / l.stride + 1;
    w = (w + 2 * l.padding - l.kernel) / l.stride + 1;
    op.output = static_cast<int>(m.activations.size());
    m.activations.push_back({s_out, out_unsigned, l.out_channels, h, w});
    m.ops.push_back(op);
    cur = op.output;

    if (l.before_residual_add) {
      if (l.residual_from < 0 || i + 1 >= layers.size()) throw Error("cannot export: malformed residual block");
      IntOp add;
      add.kind = OpKind::kAdd;
      add.input = input_act[l.residual_from];
      add.input2 = cur;
      double s_next = layers[i + 1].is_linear ? pool_quant->scale() : input_quant(i + 1)->scale();
      bool next_unsigned = layers[i + 1].is_linear ? pool_quant->is_unsigned() : input_quant(i + 1)->is_unsigned();
      // As many fractional bits as keep both multipliers below 2^31 (at most kMaxAddShift).
      double ratio_a = m.activations[add.input].scale / s_next, ratio_b = m.activations[add.input2].scale / s_next;
      int shift = kMaxAddShift;
      while (shift > 0 && std::max(ratio_a, ratio_b) * std::ldexp(1.0, shift) >= std::ldexp(1.0, 31)) --shift;
      add.add_shift = shift;
      add.add_mult_a = std::llround(std::ldexp(ratio_a, shift));
      add.add_mult_b = std::llround(std::ldexp(ratio_b, shift));
      add.output = static_cast<int>(m.activations.size());
      m.activations.push_back({s_next, next_unsigned, l.out_channels, h, w});
      m.ops.push_back(add);
      cur = add.output;
    }
  }
  if (m.classes.empty())
    for (int64_t c = 0; c < layers.back().out_channels; ++c) m.classes.push_back(std::to_string(c));
  return m;
}

}  // namespace prom::exporter
