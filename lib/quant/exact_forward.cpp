#include "quant/exact_forward.h"

#include <cmath>

#include "core/autocast.h"
#include "core/error.h"
#include "quant/activation_table.h"
#include "quant/requant_gains.h"
#include "quant/straight_through.h"

namespace prom::quant {
namespace {

// Below this bound every partial sum of a convolution on codes is an exact float32 integer.
const double kFloat32Exact = std::ldexp(1.0, 24);

bool all_initialized(const std::vector<ActivationQuantImpl*>& quantizers) {
  for (const auto* q : quantizers)
    if (q && !q->initialized()) return false;
  return true;
}

// Per tensor: the index of the last node that reads it (-1: never read).
std::vector<int> last_reads(const std::vector<model::GraphNode>& graph) {
  std::vector<int> last(graph.size() + 1, -1);
  for (size_t i = 0; i < graph.size(); ++i)
    for (int t : graph[i].inputs) last[t] = static_cast<int>(i);
  return last;
}

}  // namespace

bool fully_quantized(model::ClassifierModel& net) {
  auto q = tensor_quantizers(net);
  auto pre = preactivation_quantizers(net);
  const auto& layers = net.layers();
  for (size_t i = 0; i < net.graph().size(); ++i) {
    const auto& node = net.graph()[i];
    if (node.layer >= 0 && needs_table(node.activation) && !pre[i]) return false;
    for (int t : node.inputs)
      if (!q[t]) return false;
    if (node.kind == model::NodeKind::kConv || node.kind == model::NodeKind::kLinear) {
      const auto& l = layers[node.layer];
      auto hook = l.conv ? l.conv->weight_hook : l.linear->weight_hook;
      if (!dynamic_cast<WeightQuantizer*>(hook.get())) return false;
    }
    if (node.kind != model::NodeKind::kLinear && !q[node.output]) return false;
  }
  return q[net.graph().size()] == nullptr;  // the last node writes int32 logits
}

std::vector<std::pair<const void*, int64_t>> ExactForwardImpl::state_key() const {
  std::vector<std::pair<const void*, int64_t>> key;
  for (const auto& t : model_.parameters()) key.emplace_back(t.data_ptr(), static_cast<int64_t>(t._version()));
  for (const auto& t : model_.buffers()) key.emplace_back(t.data_ptr(), static_cast<int64_t>(t._version()));
  return key;
}

const ExactForwardImpl::Lowered& ExactForwardImpl::lowered(const torch::Device& device) {
  auto key = state_key();
  if (key == lowered_key_ && device == lowered_device_ && !lowered_.layers.empty()) return lowered_;
  torch::NoGradGuard no_grad;
  const auto& graph = model_.graph();
  const auto& layers = model_.layers();
  auto q = tensor_quantizers(model_);
  auto pre = preactivation_quantizers(model_);
  Lowered low;
  low.layers.resize(graph.size());
  low.adds.resize(graph.size());
  low.muls.resize(graph.size());
  low.weights.resize(graph.size());
  low.tables.resize(graph.size());
  low.scales.assign(graph.size() + 1, 1.0);
  for (size_t t = 0; t < q.size(); ++t)
    if (q[t]) low.scales[t] = q[t]->scale();
  for (size_t i = 0; i < graph.size(); ++i) {
    const auto& node = graph[i];
    if (node.kind == model::NodeKind::kConv || node.kind == model::NodeKind::kLinear) {
      const auto& info = layers[node.layer];
      IntLayer l = lower_node(info, node, q, pre[i], multiplier_bits_);
      auto dtype = node.kind == model::NodeKind::kLinear || l.max_abs_accumulator >= kFloat32Exact ? torch::kFloat64
                                                                                                   : torch::kFloat32;
      low.weights[i] = l.weight.to(device, dtype);
      if (l.table.defined()) low.tables[i] = l.table.to(device, torch::kFloat32);
      low.layers[i] = std::move(l);
    } else if (node.kind == model::NodeKind::kAdd) {
      low.adds[i] = lower_add(low.scales[node.inputs[0]], low.scales[node.inputs[1]], low.scales[node.output],
                              q[node.output]->is_unsigned(), multiplier_bits_);
    } else if (node.kind == model::NodeKind::kMul) {
      low.muls[i] = lower_mul(low.scales[node.inputs[0]], low.scales[node.inputs[1]], low.scales[node.output],
                              q[node.output]->is_unsigned(), multiplier_bits_);
    }
  }
  lowered_ = std::move(low);
  lowered_key_ = std::move(key);
  lowered_device_ = device;
  return lowered_;
}

const std::vector<IntLayer>& ExactForwardImpl::lowered_layers() { return lowered(torch::kCPU).layers; }

torch::Tensor ExactForwardImpl::run_conv(size_t i, const model::GraphNode& node, const torch::Tensor& in,
                                         const Lowered& low) const {
  const auto& info = model_.layers()[node.layer];
  const torch::Tensor& w = low.weights[i];
  torch::Tensor x = in.scalar_type() == w.scalar_type() ? in : in.to(w.scalar_type());
  torch::Tensor acc = torch::conv2d(x, w, {}, info.stride, info.padding, 1, info.groups);
  torch::Tensor out = requantize_codes(acc, low.layers[i]);
  return low.tables[i].defined() ? lookup_codes(out, low.tables[i]) : out;
}

torch::Tensor ExactForwardImpl::run_linear(size_t i, const torch::Tensor& in, const Lowered& low) const {
  const IntLayer& l = low.layers[i];
  const auto device = in.device();
  // Exact in float64: every sum of code products stays far below 2^53.
  torch::Tensor acc = in.to(torch::kFloat64).flatten(1).matmul(low.weights[i].t());
  if (!l.output_scale.defined()) {  // a hidden layer (MobileNetV3's head): requantized like a 1x1 conv
    torch::Tensor out = requantize_codes(acc, l);
    return low.tables[i].defined() ? lookup_codes(out, low.tables[i]) : out;
  }
  torch::Tensor biased = acc * std::ldexp(1.0, static_cast<int>(l.acc_shift)) + l.bias.to(device, torch::kFloat64);
  // The engine's dequantization: float32(int32 logit) * float32 step.
  return biased.to(torch::kFloat32) * l.output_scale.to(device).unsqueeze(0);
}

bool ExactForwardImpl::frozen() const {
  for (const auto& m : model_.modules(false)) {
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get()); bn && bn->is_training()) return false;
    if (auto* a = dynamic_cast<ActivationQuantImpl*>(m.get()); a && a->observing() && !a->learned()) return false;
  }
  return true;
}

void ExactForwardImpl::before_simulated_forward() {
  if (multiplier_bits_ < 31) set_requant_gains(model_, multiplier_bits_);
}

torch::Tensor ExactForwardImpl::train_forward(const torch::Tensor& x, const torch::Tensor& simulated) {
  if (!in_training_ || !frozen()) return simulated;
  torch::Tensor exact;
  {
    torch::NoGradGuard no_grad;
    exact = exact_logits(x.detach());
  }
  if (!exact.defined()) return simulated;
  return StraightThrough::apply(simulated, exact.to(simulated.scalar_type()));
}

torch::Tensor ExactForwardImpl::eval_forward(const torch::Tensor& x) { return in_eval_ ? exact_logits(x) : torch::Tensor(); }

torch::Tensor ExactForwardImpl::exact_logits(const torch::Tensor& x) {
  auto q = tensor_quantizers(model_);
  if (!all_initialized(q)) return {};
  torch::NoGradGuard no_grad;
  AutocastOff fp32;  // inside a train.amp region: integer sums must not be cast to bf16/fp16
  const Lowered& low = lowered(x.device());
  const auto& graph = model_.graph();
  const std::vector<int> last = last_reads(graph);
  std::vector<torch::Tensor> codes(graph.size() + 1);
  codes[0] = quantize_codes(x, static_cast<float>(low.scales[0]), arith::activation_grid(q[0]->is_unsigned()));
  for (size_t i = 0; i < graph.size(); ++i) {
    const auto& node = graph[i];
    switch (node.kind) {
      case model::NodeKind::kConv: codes[node.output] = run_conv(i, node, codes[node.inputs[0]], low); break;
      case model::NodeKind::kAdd:
        codes[node.output] = add_codes(codes[node.inputs[0]], codes[node.inputs[1]], low.adds[i]);
        break;
      case model::NodeKind::kGlobalAvgPool:
        codes[node.output] = average_pool_codes(codes[node.inputs[0]]).unsqueeze(-1).unsqueeze(-1);
        break;
      case model::NodeKind::kLinear: codes[node.output] = run_linear(i, codes[node.inputs[0]], low); break;
      case model::NodeKind::kMul:
        codes[node.output] = mul_codes(codes[node.inputs[0]], codes[node.inputs[1]], low.muls[i]);
        break;
    }
    if (!recording_)
      for (int t : node.inputs)
        if (last[t] == static_cast<int>(i)) codes[t] = torch::Tensor();
  }
  if (recording_) recorded_ = codes;
  return codes.back();
}

}  // namespace prom::quant
