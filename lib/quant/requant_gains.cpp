#include "quant/requant_gains.h"

#include <cmath>
#include <vector>

#include "quant/arithmetic.h"
#include "quant/int_layer.h"
#include "quant/int_tensor_ops.h"

namespace prom::quant {
namespace {

bool ready(const ActivationQuantImpl* q) { return q && q->initialized(); }

// r_c for each output channel of a conv: |a_c * s_in * s_w,c| / s_out shortened, over unshortened.
torch::Tensor conv_gains(const model::LayerInfo& l, double s_in, double s_out, int bits) {
  auto* wq = dynamic_cast<WeightQuantizer*>(l.conv->weight_hook.get());
  if (!wq) return {};
  torch::Tensor s_w_t = wq->quantize(l.conv->weight.detach())
                            .scale.flatten()
                            .to(torch::kCPU, torch::kFloat64)
                            .expand({l.out_channels})
                            .contiguous();
  const std::vector<double> a = folded_affine(l).scale;  // the lowering's own fold (int_layer.h)
  auto s_w = s_w_t.accessor<double, 1>();
  torch::Tensor gain = torch::empty({l.out_channels}, torch::kFloat32);
  auto g = gain.accessor<float, 1>();
  for (int64_t c = 0; c < l.out_channels; ++c)
    g[c] = static_cast<float>(shortened_multiplier_gain(std::abs(a[c] * s_w[c] * (s_in / s_out)), bits));
  return gain;
}

// weight.scale: fit_multiplier: the int8 scales fit the multipliers of the current BatchNorm and
// activation scales, as the lowering fits them (lower_layer), before the gains read them.
void fit_int8_weight_scales(model::ClassifierModel& net, const std::vector<ActivationQuantImpl*>& q,
                            const std::vector<ActivationQuantImpl*>& pre) {
  const auto& graph = net.graph();
  for (size_t i = 0; i < graph.size(); ++i) {
    const auto& node = graph[i];
    if (node.layer < 0) continue;
    const model::LayerInfo& l = net.layers()[node.layer];
    auto hook = l.conv ? l.conv->weight_hook : l.linear->weight_hook;
    auto* fitted = dynamic_cast<Int8WeightImpl*>(hook.get());
    if (!fitted || !fitted->fits_multiplier()) continue;
    const ActivationQuantImpl* in = q[node.inputs[0]];
    const ActivationQuantImpl* out = pre[i] ? pre[i] : q[node.output];  // none: the logits, not requantized
    fitted->set_multiplier_per_step(ready(in) && ready(out) ? multiplier_per_weight_step(l, in->scale(), out->scale())
                                                            : torch::Tensor());
  }
}

}  // namespace

double shortened_multiplier_gain(double m, int bits) {
  if (!(m > 0) || !std::isfinite(m) || bits >= 31) return 1.0;
  int exponent = 0;
  const double mantissa = std::frexp(m, &exponent);  // the shortening acts on the mantissa alone
  const arith::FixedPointMultiplier full = arith::quantize_multiplier(std::ldexp(mantissa, -1));
  const arith::FixedPointMultiplier kept = arith::shorten_multiplier(full, bits);
  if (full.multiplier == 0 || kept.multiplier == 0) return 1.0;
  return arith::multiplier_value(kept) / std::ldexp(mantissa, -1);
}

void set_requant_gains(model::ClassifierModel& net, int bits) {
  torch::NoGradGuard no_grad;
  const std::vector<ActivationQuantImpl*> q = tensor_quantizers(net);
  const std::vector<ActivationQuantImpl*> pre = preactivation_quantizers(net);
  for (const auto* list : {&q, &pre})
    for (auto* a : *list)
      if (a) a->set_gains({}, {});
  if (bits >= 31) return;
  fit_int8_weight_scales(net, q, pre);
  const auto& graph = net.graph();
  for (size_t i = 0; i < graph.size(); ++i) {
    const auto& node = graph[i];
    // A layer followed by a table activation requantizes to its pre-activation grid. (The scaling of
    // squeeze-and-excitation is shortened as well; its gain is not modelled here yet.)
    ActivationQuantImpl* out = node.kind == model::NodeKind::kConv && pre[i] ? pre[i] : q[node.output];
    if (node.kind == model::NodeKind::kConv) {
      ActivationQuantImpl* in = q[node.inputs[0]];
      if (!ready(in) || !ready(out)) continue;
      out->set_gains(conv_gains(net.layers()[node.layer], in->scale(), out->scale(), bits), {});
    } else if (node.kind == model::NodeKind::kAdd) {
      ActivationQuantImpl* skip = q[node.inputs[0]];
      ActivationQuantImpl* branch = q[node.inputs[1]];
      if (!ready(skip) || !ready(branch) || !ready(out)) continue;
      const IntAdd add = lower_add(skip->scale(), branch->scale(), out->scale(), out->is_unsigned(), bits);
      const double unit = std::ldexp(1.0, -add.shift);
      const double g_a = add.mult_a * unit / (skip->scale() / out->scale());
      const double g_b = add.mult_b * unit / (branch->scale() / out->scale());
      // The branch quantizer already carries its producer's (the projection conv's) gain.
      branch->set_gains(branch->producer_gain(), torch::full({1}, g_b / g_a, torch::kFloat32));
      out->set_gains(torch::full({1}, g_a, torch::kFloat32), {});
    }
  }
}

}  // namespace prom::quant
