#include "quant/policy.h"

#include <fnmatch.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "model/registry.h"
#include "quant/activation_table.h"
#include "quant/exact_forward.h"
#include "quant/quantizers.h"

namespace prom::quant {
namespace {

bool rule_matches(const config::QuantRule& rule, const model::LayerInfo& layer) {
  if (!rule.roles.empty() &&
      std::find(rule.roles.begin(), rule.roles.end(), model::role_name(layer.role)) == rule.roles.end())
    return false;
  if (!rule.names.empty()) {
    bool any = false;
    for (const auto& glob : rule.names) any = any || fnmatch(glob.c_str(), layer.name.c_str(), 0) == 0;
    if (!any) return false;
  }
  return true;
}

// True when `node` reads `tensor` through `quantizer` and nothing else.
bool reads_through(const model::ClassifierModel& model, const model::GraphNode& node, const ActivationQuantImpl* quantizer) {
  const auto& layers = model.layers();
  switch (node.kind) {
    case model::NodeKind::kConv: {
      const auto& conv = layers[node.layer].conv;
      return conv->input_hook.get() == quantizer && !conv->input_prequantized;
    }
    case model::NodeKind::kLinear: return layers[node.layer].linear->input_hook.get() == quantizer;
    case model::NodeKind::kGlobalAvgPool: return model.pool_hook().get() == quantizer;
    case model::NodeKind::kAdd:
    case model::NodeKind::kMul: return false;
  }
  return false;
}

// A ReLU6 whose output is read only through one unsigned observer quantizer runs inside that
// quantizer's fake-quant pass, and its producer skips it: same values and gradients, two passes
// over the activation fewer per step (forward and backward).
void fuse_relu6_into_quantizers(model::ClassifierModel& model) {
  const auto& graph = model.graph();
  const auto& layers = model.layers();
  auto q = tensor_quantizers(model);
  for (const auto& producer : graph) {
    if (producer.kind != model::NodeKind::kConv || producer.activation != model::Activation::kRelu6 ||
        !layers[producer.layer].act) continue;
    ActivationQuantImpl* quantizer = q[producer.output];
    bool fuse = quantizer && quantizer->is_unsigned() && !quantizer->learned();
    for (const auto& consumer : graph)
      for (int t : consumer.inputs)
        if (t == producer.output) fuse = fuse && reads_through(model, consumer, quantizer);
    layers[producer.layer].act.ptr()->deferred = fuse;
    if (fuse) quantizer->set_fused_relu6(true);
  }
}

}  // namespace

std::vector<LayerAssignment> resolve_policy(const config::QuantConfig& config, const model::ClassifierModel& model) {
  const auto& layers = model.layers();
  // Layers whose output is a residual branch (the add node's second input).
  std::vector<bool> feeds_add(layers.size(), false);
  for (const auto& node : model.graph())
    if (node.kind == model::NodeKind::kAdd) {
      const auto& producer = model.graph().at(node.inputs[1] - 1);  // node k writes tensor k + 1
      if (producer.layer >= 0) feeds_add[producer.layer] = true;
    }
  std::vector<LayerAssignment> out;
  std::vector<int> used(config.rules.size(), 0);
  for (size_t li = 0; li < layers.size(); ++li) {
    const auto& layer = layers[li];
    LayerAssignment a;
    a.layer = layer.name;
    a.role = layer.role;
    a.input_unsigned = layer.input_nonnegative;
    for (size_t i = 0; i < config.rules.size(); ++i) {
      if (!rule_matches(config.rules[i], layer)) continue;
      a.rule = static_cast<int>(i);
      a.weight = config.rules[i].weight;
      a.input = config.rules[i].input;
      ++used[i];
      break;
    }
    a.residual_quant = feeds_add[li] && a.input.type != "none";
    out.push_back(a);
  }
  for (size_t i = 0; i < used.size(); ++i)
    if (used[i] == 0)
      throw ConfigKeyError("quant.rules[" + std::to_string(i) + "]: matches no layer of the model (check roles and names)");
  return out;
}

std::vector<LayerAssignment> apply_policy(model::ClassifierModel& model, const config::QuantConfig& config) {
  auto assignments = resolve_policy(config, model);
  const auto& layers = model.layers();
  const auto& graph = model.graph();
  const double momentum = config.observer_momentum;
  for (const auto& node : graph) {
    if (node.layer < 0) continue;
    const auto& a = assignments[node.layer];
    const auto& layer = layers[node.layer];
    auto w = make_weight_quantizer(a.weight, layer.out_channels, requant_multiplier_bits(config));
    std::shared_ptr<model::TensorHook> in = make_activation_quantizer(a.input, a.input_unsigned, momentum);
    const model::GraphNode& producer = graph.at(std::max(node.inputs[0] - 1, 0));  // node k writes tensor k + 1
    if (in && node.inputs[0] > 0 && producer.kind == model::NodeKind::kGlobalAvgPool) {
      if (layer.role == model::LayerRole::kSeReduce) {
        // Squeeze-and-excitation: the block quantizes its input once, for the pooling and the scaling,
        // and the pooled values snap back to that grid (integer pooling keeps the grid).
        auto features = make_activation_quantizer(a.input, a.input_unsigned, momentum);
        model.set_tensor_hook(producer.inputs[0], features);
        model.set_tensor_hook(node.inputs[0], std::make_shared<GridSnapImpl>(features.get()));
      } else {
        // The head's int8 input is produced by quantized pooling (what the engine computes).
        model.set_pool_hook(std::make_shared<PooledActivationQuantImpl>(a.input_unsigned, a.input.learned, momentum));
      }
      in = nullptr;
    }
    if (layer.conv) layer.conv.ptr()->set_hooks(in, w);
    if (layer.linear) layer.linear.ptr()->set_hooks(in, w);
    // Activations computed by tables read signed pre-activation codes (lib/quant/activation_table.h).
    if (layer.activation_layer && needs_table(layer.activation) && a.input.type != "none")
      layer.activation_layer.ptr()->set_input_hook(make_activation_quantizer(a.input, /*is_unsigned=*/false, momentum));
  }
  // The gate of a squeeze-and-excitation block, as its second layer's rule says (unsigned after a
  // sigmoid).
  for (const auto& node : graph) {
    if (node.kind != model::NodeKind::kMul) continue;
    const model::GraphNode& gate = graph.at(node.inputs[1] - 1);
    const auto& a = assignments.at(gate.layer);
    model.set_tensor_hook(node.inputs[1], make_activation_quantizer(a.input, model::nonnegative_output(gate.activation),
                                                                    momentum));
  }
  // Residual branches are quantized before their add, as the producing layer's rule says.
  for (const auto& node : model.graph()) {
    if (node.kind != model::NodeKind::kAdd) continue;
    const auto& a = assignments.at(model.graph().at(node.inputs[1] - 1).layer);
    if (a.residual_quant)
      model.set_branch_hook(node.inputs[1], make_activation_quantizer(a.input, false, config.observer_momentum));
  }
  if (config.fuse_relu6) fuse_relu6_into_quantizers(model);
  // Eval then computes what the exported integer model computes (lib/quant/exact_forward.h); with
  // eval_forward: simulated it still gives training its exact logits and short multipliers' gains.
  model.set_exact_forward(fully_quantized(model) ? std::make_shared<ExactForwardImpl>(
                                                       model, config.train_forward == "exact_when_frozen",
                                                       requant_multiplier_bits(config), config.eval_forward == "exact")
                                                 : nullptr);
  return assignments;
}

std::vector<LayerAssignment> attach_quantizers(model::ClassifierModel& model, const config::QuantConfig& config,
                                               const torch::Device& device) {
  auto assignments = apply_policy(model, config);
  model.to(device);
  return assignments;
}

std::string format_policy(const std::vector<LayerAssignment>& assignments) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-24s %-18s %-5s %-26s %-10s %s\n", "layer", "role", "rule", "weight", "input",
                "residual");
  out << line;
  for (const auto& a : assignments) {
    std::string weight = a.weight.type == "none" ? "float"
                         : a.weight.type == "ternary"
                             ? "ternary " + a.weight.method + " " + a.weight.granularity
                             : "int8 " + a.weight.granularity + (a.weight.learned ? " lsq" : "");
    std::string input = a.input.type == "none" ? "float" : std::string(a.input_unsigned ? "uint8" : "int8") +
                                                               (a.input.learned ? " lsq" : "");
    std::snprintf(line, sizeof line, "%-24s %-18s %-5s %-26s %-10s %s\n", a.layer.c_str(), model::role_name(a.role),
                  a.rule < 0 ? "-" : std::to_string(a.rule).c_str(), weight.c_str(), input.c_str(),
                  a.residual_quant ? "int8" : "");
    out << line;
  }
  return out.str();
}

void on_epoch_start(model::ClassifierModel& model, const config::QuantConfig& config, int epoch) {
  bool observe = config.freeze_observers_after < 0 || epoch < config.freeze_observers_after;
  for (auto& m : model.modules(false))
    if (auto* a = dynamic_cast<ActivationQuantImpl*>(m.get())) a->set_observing(observe);
  apply_bn_freeze(model, config, epoch);
}

void apply_bn_freeze(model::ClassifierModel& model, const config::QuantConfig& config, int epoch) {
  if (config.freeze_bn_after < 0 || epoch < config.freeze_bn_after) return;
  for (auto& m : model.modules(false))
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) bn->eval();
}

}  // namespace prom::quant
