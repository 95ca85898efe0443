#include "lowering/lower.h"

#include "core/error.h"
#include "prom/version.h"
#include "quant/int_layer.h"
#include "quant/int_tensor_ops.h"

namespace prom::lowering {
namespace {

using graph::Activation;
using graph::IntModel;
using graph::IntOp;
using graph::OpKind;
using model::NodeKind;

// lower_layer with the export prefix on its errors.
quant::IntLayer lower(const model::LayerInfo& info, const model::GraphNode& node,
                      const std::vector<quant::ActivationQuantImpl*>& q, quant::ActivationQuantImpl* pre,
                      int multiplier_bits) {
  try {
    return quant::lower_node(info, node, q, pre, multiplier_bits);
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw Error(std::string("cannot export: ") + e.what());
  }
}

// A pointer, not a reference: gcc 14 warns of a dangling reference to the temporary message string.
const quant::ActivationQuantImpl* quantizer_of(const std::vector<quant::ActivationQuantImpl*>& q, int tensor,
                                               const std::string& what) {
  if (!q.at(tensor) || !q[tensor]->initialized())
    throw Error("cannot export: " + what + " is not quantized (int8 activations needed on every tensor)");
  return q[tensor];
}

// A conv, the classifier, or a hidden linear layer (MobileNetV3's head), which requantizes like a 1x1
// convolution on a 1x1 map and is written as one.
IntOp conv_op(const model::LayerInfo& info, const model::GraphNode& node, quant::IntLayer l) {
  IntOp op;
  const bool logits = node.kind == NodeKind::kLinear && !l.multiplier.defined();
  op.kind = logits ? OpKind::kLinear : OpKind::kConv;
  op.name = info.name;
  op.role = info.role;
  op.input = node.inputs[0];
  op.output = node.output;
  op.in_channels = info.in_channels;
  op.out_channels = info.out_channels;
  op.kernel = info.kernel;
  op.stride = info.stride;
  op.padding = info.padding;
  op.groups = info.groups;
  op.ternary = l.ternary;
  op.relu6 = node.activation == model::Activation::kRelu6;
  op.weight = node.kind == NodeKind::kLinear && !logits ? l.weight.reshape({info.out_channels, info.in_channels, 1, 1})
                                                        : l.weight;
  if (l.table.defined()) {
    op.activation = node.activation;
    op.table = l.table;
  }
  op.bias = l.bias;
  op.acc_shift = l.acc_shift;
  op.weight_scale = l.weight_scale;
  if (op.kind == OpKind::kLinear) {
    op.output_scale = l.output_scale;
  } else {
    op.multiplier = l.multiplier;
    op.right_shift = l.right_shift;
    op.clamp_lo = l.clamp_lo;
    op.clamp_hi = l.clamp_hi;
  }
  return op;
}

// Squeeze-and-excitation scaling: features (step `s_x`) times the gate (step `s_g`) onto `out`'s grid.
IntOp mul_op(const model::GraphNode& node, double s_x, double s_g, const quant::ActivationQuantImpl& out,
             int multiplier_bits) {
  quant::IntMul mul;
  try {
    mul = quant::lower_mul(s_x, s_g, out.scale(), out.is_unsigned(), multiplier_bits);
  } catch (const Error& e) {
    throw Error(std::string("cannot export: ") + e.what());
  }
  IntOp op;
  op.kind = OpKind::kMul;
  op.input = node.inputs[0];
  op.input2 = node.inputs[1];
  op.output = node.output;
  op.mul_multiplier = mul.multiplier.multiplier;
  op.mul_shift = mul.multiplier.right_shift;
  return op;
}

}  // namespace

IntModel lower_model(model::ClassifierModel& net, const ExportOptions& options) {
  torch::NoGradGuard no_grad;
  net.eval();
  const auto& graph = net.graph();
  const auto& layers = net.layers();
  const auto q = quant::tensor_quantizers(net);
  const auto pre = quant::preactivation_quantizers(net);
  IntModel m;
  m.arch = net.arch();
  m.prom_version = PROM_VERSION;
  m.classes = options.classes;
  m.input_size = options.input_size;
  m.preprocess = options.preprocess;
  m.ternary_packing = options.ternary_packing;
  // One activation per graph tensor, with the graph's ids.
  const auto& in_q = *quantizer_of(q, 0, "the model input");
  m.activations.push_back({in_q.scale(), in_q.is_unsigned(), layers.at(graph.at(0).layer).in_channels,
                           options.input_size, options.input_size});
  for (size_t i = 0; i < graph.size(); ++i) {
    const auto& node = graph[i];
    const Activation in = m.activations.at(node.inputs[0]);
    Activation out = in;
    if (node.kind == NodeKind::kConv || node.kind == NodeKind::kLinear) {
      const auto& info = layers[node.layer];
      IntOp op = conv_op(info, node, lower(info, node, q, pre[i], options.multiplier_bits));
      out.channels = info.out_channels;
      if (op.kind == OpKind::kConv) {
        out.height = (in.height + 2 * op.padding - op.kernel) / op.stride + 1;
        out.width = (in.width + 2 * op.padding - op.kernel) / op.stride + 1;
        const auto& oq = *quantizer_of(q, node.output, "the output of " + info.name);
        out.scale = oq.scale();
        out.is_unsigned = oq.is_unsigned();
      } else {
        out = {1.0, false, info.out_channels, 1, 1};  // int32 logits
        m.output = node.output;
      }
      m.ops.push_back(std::move(op));
    } else if (node.kind == NodeKind::kAdd) {
      const auto& oq = *quantizer_of(q, node.output, "a residual sum");
      const auto& bq = *quantizer_of(q, node.inputs[1], "a residual branch");
      auto add = quant::lower_add(in.scale, bq.scale(), oq.scale(), oq.is_unsigned(), options.multiplier_bits);
      IntOp op;
      op.kind = OpKind::kAdd;
      op.input = node.inputs[0];
      op.input2 = node.inputs[1];
      op.output = node.output;
      op.add_mult_a = add.mult_a;
      op.add_mult_b = add.mult_b;
      op.add_shift = add.shift;
      out.scale = oq.scale();
      out.is_unsigned = oq.is_unsigned();
      m.ops.push_back(op);
    } else if (node.kind == NodeKind::kMul) {  // squeeze-and-excitation scaling
      const auto& oq = *quantizer_of(q, node.output, "a squeeze-and-excitation output");
      m.ops.push_back(mul_op(node, in.scale, m.activations.at(node.inputs[1]).scale, oq, options.multiplier_bits));
      out.scale = oq.scale();
      out.is_unsigned = oq.is_unsigned();
    } else {  // global average pooling: integer sums, rounded division, same grid
      IntOp op;
      op.kind = OpKind::kAvgPool;
      op.input = node.inputs[0];
      op.output = node.output;
      out.height = out.width = 1;
      m.ops.push_back(op);
    }
    m.activations.push_back(out);
  }
  if (m.output < 0) throw Error("cannot export: the model does not end with a linear classifier");
  if (m.classes.empty())
    for (int64_t c = 0; c < m.activations[m.output].channels; ++c) m.classes.push_back(std::to_string(c));
  return m;
}

}  // namespace prom::lowering
