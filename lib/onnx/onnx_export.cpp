#include "onnx/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "onnx/qdq_builder.h"
#include "quant/arithmetic.h"

namespace prom::onnx_export {
namespace {

using graph::IntOp;
using graph::OpKind;
constexpr auto kFloat = ::onnx::TensorProto_DataType_FLOAT;
constexpr auto kInt32 = ::onnx::TensorProto_DataType_INT32;

std::string tensor_name(int id) { return "t" + std::to_string(id); }

// Per output channel of a conv or linear op: the weight codes and the scales that reproduce prom's
// integer arithmetic in QDQ form (see onnx_export.h).
struct ChannelParams {
  torch::Tensor codes;
  std::vector<float> weight_scale;
  std::vector<float> bias;  // float32 bias: prom's bias with its fractional bits, in real units
  std::vector<float> bias_scale;  // int32 bias: codes at scale s_in * s_w (fractional bits dropped)
  std::vector<int32_t> bias_codes;
};

ChannelParams channel_params(const IntOp& op, float s_in, double s_out) {
  ChannelParams p;
  p.codes = op.weight.to(torch::kInt8).clone();
  const torch::Tensor bias_t = op.bias.to(torch::kInt32).contiguous();
  const auto bias = bias_t.accessor<int32_t, 1>();
  const bool linear = op.kind == OpKind::kLinear;
  const torch::Tensor mult_t = linear ? torch::Tensor() : op.multiplier.to(torch::kInt32).contiguous();
  const torch::Tensor shift_t = linear ? torch::Tensor() : op.right_shift.to(torch::kInt32).contiguous();
  const torch::Tensor out_t = linear ? op.output_scale.to(torch::kFloat32).contiguous() : torch::Tensor();
  const int shift = static_cast<int>(op.acc_shift);
  for (int64_t c = 0; c < op.out_channels; ++c) {
    const std::string where = "layer " + op.name + " channel " + std::to_string(c);
    double real_per_acc = 0;  // real value of one accumulator step at the op's output
    int32_t bias_code = static_cast<int32_t>(quant::arith::rounding_shift_right(bias[c], shift));
    if (linear) {
      real_per_acc = std::ldexp(static_cast<double>(out_t.data_ptr<float>()[c]), shift);
    } else if (mult_t.data_ptr<int32_t>()[c] == 0) {
      // prom's output is clamp(0): a constant-zero channel, expressed with zero codes and bias.
      p.codes[c].zero_();
      bias_code = 0;
      real_per_acc = s_out;
      p.bias.push_back(0.0f);
    } else {
      const int32_t m = mult_t.data_ptr<int32_t>()[c], r = shift_t.data_ptr<int32_t>()[c];
      real_per_acc = std::ldexp(static_cast<double>(m), shift - r) * s_out;
    }
    if (p.bias.size() == static_cast<size_t>(c))  // bias * 2^-acc_shift accumulator steps
      p.bias.push_back(static_cast<float>(static_cast<double>(bias[c]) * std::ldexp(real_per_acc, -shift)));
    const float w = float32_scale(real_per_acc / s_in, where + " weight");
    p.weight_scale.push_back(w);
    p.bias_scale.push_back(float32_scale(static_cast<double>(s_in * w), where + " bias"));
    p.bias_codes.push_back(bias_code);
  }
  return p;
}

class QdqExporter {
 public:
  QdqExporter(const graph::IntModel& m, const OnnxExportOptions& options, ::onnx::GraphProto* g)
      : m_(m), options_(options), b_(g), emitted_(m.activations.size()) {}

  void run(OnnxSummary* summary) {
    const auto& in = m_.activations.at(m_.input);
    b_.input(kInputName, kFloat, {in.channels, in.height, in.width});
    quantize_input();
    for (const IntOp& op : m_.ops) {
      switch (op.kind) {
        case OpKind::kConv: conv(op); break;
        case OpKind::kAdd: add(op); break;
        case OpKind::kAvgPool: avgpool(op); break;
        case OpKind::kLinear: linear(op); break;
        default: throw Error(std::string("cannot export to ONNX: op kind '") + graph::op_kind_name(op.kind) +
                             "' has no ONNX form in prom's exporter");
      }
      if (op.kind == OpKind::kConv || op.kind == OpKind::kLinear) ++(op.ternary ? summary->ternary_layers : summary->int8_layers);
    }
    const auto& out = m_.activations.at(m_.output);
    if (!logits_written_) {  // a graph that ends in a quantized activation: its dequantized values
      b_.node("Identity", "output", {dequantized(m_.output)}, {kOutputName});
      b_.output(kOutputName, kFloat, {out.channels, out.height, out.width});
    } else {
      b_.output(kOutputName, kFloat, {out.channels});
    }
  }

 private:
  struct Emitted {
    bool params = false, quantized = false, dequantized = false;
    float scale = 0;
  };

  // Scale and zero-point initializers of activation `id`, made on first use.
  const Emitted& params(int id) {
    Emitted& e = emitted_.at(id);
    if (!e.params) {
      const auto& a = m_.activations.at(id);
      e.scale = float32_scale(a.scale, "activation " + std::to_string(id));
      b_.float_scalar(tensor_name(id) + "_scale", e.scale);
      b_.zero_point(tensor_name(id) + "_zero_point",
                    a.is_unsigned ? ::onnx::TensorProto_DataType_UINT8 : ::onnx::TensorProto_DataType_INT8);
      e.params = true;
    }
    return e;
  }

  // QuantizeLinear of the float tensor `value` into activation `id` ("t<id>_q").
  void quantize(int id, const std::string& value) {
    params(id);
    const std::string t = tensor_name(id);
    b_.node("QuantizeLinear", t + "_quantize", {value, t + "_scale", t + "_zero_point"}, {t + "_q"});
    emitted_[id].quantized = true;
  }

  // prom's input codes are nearbyint(x * float32(1 / s)); QuantizeLinear computes x / s, which can
  // differ in the last bit and then round the other way. So: Mul by prom's float32 1/s, then
  // QuantizeLinear with step 1 (exact), ties to even as prom.
  void quantize_input() {
    params(m_.input);
    const std::string t = tensor_name(m_.input);
    const float inv = 1.0f / emitted_[m_.input].scale;
    b_.node("Mul", t + "_scaled", {kInputName, b_.float_scalar(t + "_inverse_scale", inv)}, {t + "_in_steps"});
    b_.node("QuantizeLinear", t + "_quantize", {t + "_in_steps", b_.float_scalar(t + "_code_step", 1.0f),
                                                t + "_zero_point"}, {t + "_q"});
    emitted_[m_.input].quantized = true;
  }

  // The float tensor "t<id>" (DequantizeLinear of "t<id>_q"), made on first use.
  std::string dequantized(int id) {
    Emitted& e = emitted_.at(id);
    const std::string t = tensor_name(id);
    if (!e.quantized) throw Error("cannot export to ONNX: activation " + std::to_string(id) + " is read before it is written");
    if (!e.dequantized) {
      b_.node("DequantizeLinear", t + "_dequantize", {t + "_q", t + "_scale", t + "_zero_point"}, {t});
      e.dequantized = true;
    }
    return t;
  }

  // Weight and bias DequantizeLinear nodes of a conv/linear op: returns {weight, bias} float names.
  std::pair<std::string, std::string> weight_and_bias(const IntOp& op, const ChannelParams& p, const std::string& doc) {
    const int64_t n = op.out_channels;
    const std::string w = op.name + ".weight", bias = op.name + ".bias";
    b_.int8_tensor(w + "_q", p.codes);
    b_.float_tensor(w + "_scale", p.weight_scale);
    b_.zero_point(w + "_zero_point", ::onnx::TensorProto_DataType_INT8, n);
    auto* dq = b_.node("DequantizeLinear", w + "_dequantize", {w + "_q", w + "_scale", w + "_zero_point"}, {w}, doc);
    GraphBuilder::attribute(dq, "axis", int64_t{0});
    if (options_.bias == BiasFormat::kFloat) {
      b_.float_tensor(bias, p.bias);
      return {w, bias};
    }
    b_.int32_tensor(bias + "_q", p.bias_codes);
    b_.float_tensor(bias + "_scale", p.bias_scale);
    b_.zero_point(bias + "_zero_point", kInt32, n);
    dq = b_.node("DequantizeLinear", bias + "_dequantize", {bias + "_q", bias + "_scale", bias + "_zero_point"}, {bias});
    GraphBuilder::attribute(dq, "axis", int64_t{0});
    return {w, bias};
  }

  static std::string layer_doc(const IntOp& op) {
    return std::string("prom ") + graph::op_kind_name(op.kind) + " " + op.name + ", role " + model::role_name(op.role) +
           (op.ternary ? ", ternary weights: int8 codes in {-1, 0, +1}" : ", int8 weights");
  }

  void conv(const IntOp& op);
  void add(const IntOp& op);
  void avgpool(const IntOp& op);
  void linear(const IntOp& op);

  const graph::IntModel& m_;
  const OnnxExportOptions& options_;
  GraphBuilder b_;
  std::vector<Emitted> emitted_;
  bool logits_written_ = false;
};

void QdqExporter::conv(const IntOp& op) {
  if (op.table.defined())
    throw Error("cannot export to ONNX: layer " + op.name + ": its " + model::activation_name(op.activation) +
                " table has no ONNX form in prom's exporter yet (the integer engine runs it)");
  const float s_in = params(op.input).scale;
  const double s_out = params(op.output).scale;  // checks the output scale before the weights' scales
  const std::string x = dequantized(op.input);
  const auto [w, bias] = weight_and_bias(op, channel_params(op, s_in, s_out), layer_doc(op));
  const std::string y = op.name + ".conv";
  auto* node = b_.node("Conv", op.name, {x, w, bias}, {y}, layer_doc(op));
  GraphBuilder::attribute(node, "kernel_shape", std::vector<int64_t>{op.kernel, op.kernel});
  GraphBuilder::attribute(node, "strides", std::vector<int64_t>{op.stride, op.stride});
  GraphBuilder::attribute(node, "pads", std::vector<int64_t>{op.padding, op.padding, op.padding, op.padding});
  GraphBuilder::attribute(node, "dilations", std::vector<int64_t>{1, 1});
  GraphBuilder::attribute(node, "group", op.groups);
  // prom clamps the rounded codes to [clamp_lo, clamp_hi]; QuantizeLinear saturates to the type's
  // range. A narrower clamp (a folded ReLU6) is a Clip at those codes' real values: rounding is
  // monotonic, so clip-then-round equals round-then-clamp.
  const auto grid = quant::arith::activation_grid(m_.activations.at(op.output).is_unsigned);
  std::string pre_quant = y;
  if (op.clamp_lo > grid.lo || op.clamp_hi < grid.hi) {
    const float s = params(op.output).scale;
    const std::string lo = b_.float_scalar(op.name + ".clip_min", static_cast<float>(op.clamp_lo) * s);
    const std::string hi = b_.float_scalar(op.name + ".clip_max", static_cast<float>(op.clamp_hi) * s);
    pre_quant = op.name + (op.relu6 ? ".relu6" : ".clamp");
    b_.node("Clip", pre_quant, {y, lo, hi}, {pre_quant});
  }
  quantize(op.output, pre_quant);
}

void QdqExporter::add(const IntOp& op) {
  const std::string sum = tensor_name(op.output) + "_sum";
  b_.node("Add", tensor_name(op.output) + "_add", {dequantized(op.input), dequantized(op.input2)}, {sum});
  quantize(op.output, sum);
}

// Pools the codes, not their dequantized values: a sum of codes is exact in float32, and so is a mean
// that ends in .5, so QuantizeLinear's ties-to-even meets prom's integer division (sum / (H*W), ties
// to even). Pooling code * scale instead rounds every product first and moves ties either way (a
// quarter of the pooled values of a 2x2 map are ties). Same scale in and out, as in prom.
void QdqExporter::avgpool(const IntOp& op) {
  const std::string in = tensor_name(op.input), out = tensor_name(op.output);
  if (!emitted_.at(op.input).quantized)
    throw Error("cannot export to ONNX: activation " + std::to_string(op.input) + " is read before it is written");
  params(op.output);
  const std::string one = b_.float_scalar(out + "_code_step", 1.0f);
  b_.node("DequantizeLinear", in + "_codes", {in + "_q", one, in + "_zero_point"}, {in + "_codes"});
  b_.node("GlobalAveragePool", out + "_pool", {in + "_codes"}, {out + "_code_mean"});
  b_.node("QuantizeLinear", out + "_quantize", {out + "_code_mean", one, out + "_zero_point"}, {out + "_q"});
  emitted_[op.output].quantized = true;
}

void QdqExporter::linear(const IntOp& op) {
  if (op.output != m_.output)
    throw Error("cannot export to ONNX: layer " + op.name +
                ": its int32 logits feed another op (ONNX export needs the classifier to be the graph's output)");
  const auto& in = m_.activations.at(op.input);
  if (in.height * in.width != 1 || in.channels != op.in_channels)
    throw Error("cannot export to ONNX: layer " + op.name + ": its input is not a pooled [C, 1, 1] feature vector");
  const float s_in = params(op.input).scale;
  // Flatten the quantized codes [N, C, 1, 1] -> [N, C], then dequantize: DequantizeLinear -> Gemm stays adjacent.
  const std::string t = tensor_name(op.input);
  b_.node("Flatten", t + "_flatten", {t + "_q"}, {t + "_q_flat"});
  b_.node("DequantizeLinear", t + "_flat_dequantize", {t + "_q_flat", t + "_scale", t + "_zero_point"}, {t + "_flat"});
  const auto [w, bias] = weight_and_bias(op, channel_params(op, s_in, 0), layer_doc(op));
  auto* gemm = b_.node("Gemm", op.name, {t + "_flat", w, bias}, {kOutputName}, layer_doc(op));
  GraphBuilder::attribute(gemm, "transB", int64_t{1});
  logits_written_ = true;
}

void add_metadata(::onnx::ModelProto* model, const std::string& key, const std::string& value) {
  auto* p = model->add_metadata_props();
  p->set_key(key);
  p->set_value(value);
}

::onnx::ModelProto build_model(const graph::IntModel& m, const OnnxExportOptions& options, OnnxSummary* summary) {
  ::onnx::ModelProto model;
  model.set_ir_version(kIrVersion);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpsetVersion);
  model.set_producer_name("prom");
  model.set_producer_version(m.prom_version);
  model.set_doc_string("prom " + std::string(graph::kFormatName) + " integer model of " + m.arch +
                       " as QDQ ONNX: input 'input' = images normalised as metadata prom.preprocess says, float32 "
                       "[N, C, H, W]; output 'logits' float32 [N, classes] (class names: metadata prom.classes)");
  ::onnx::GraphProto* g = model.mutable_graph();
  g->set_name(m.arch + "_qdq");
  QdqExporter(m, options, g).run(summary);
  nlohmann::json ternary = nlohmann::json::array();
  for (const auto& op : m.ops)
    if (op.ternary) ternary.push_back(op.name);
  add_metadata(&model, "prom.source_format", graph::kFormatName);
  add_metadata(&model, "prom.arch", m.arch);
  add_metadata(&model, "prom.classes", nlohmann::json(m.classes).dump());
  add_metadata(&model, "prom.preprocess", nlohmann::json{{"resize", m.preprocess.resize},
                                                          {"crop", m.preprocess.crop},
                                                          {"mean", m.preprocess.mean},
                                                          {"std", m.preprocess.std}}.dump());
  add_metadata(&model, "prom.ternary_layers", ternary.dump());
  add_metadata(&model, "prom.bias", options.bias == BiasFormat::kFloat ? "float32" : "int32");
  summary->nodes = g->node_size();
  summary->initializers = g->initializer_size();
  return model;
}

// onnx::checker, then shape inference in strict mode with type checks (on a copy: it adds value_info).
void check(const ::onnx::ModelProto& model) {
  try {
    ::onnx::checker::check_model(model);
    ::onnx::ModelProto inferred = model;
    ::onnx::shape_inference::InferShapes(inferred, ::onnx::OpSchemaRegistry::Instance(),
                                         ::onnx::ShapeInferenceOptions(/*check_type=*/true, /*error_mode=*/1));
  } catch (const std::exception& e) {
    throw Error(std::string("cannot export to ONNX: the ONNX checker refused the model: ") + e.what());
  }
}

}  // namespace

std::string encode_onnx_model(const graph::IntModel& model, const OnnxExportOptions& options, OnnxSummary* summary) {
  OnnxSummary local;
  OnnxSummary* s = summary ? summary : &local;
  *s = {};
  ::onnx::ModelProto proto = build_model(model, options, s);
  check(proto);
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) throw Error("cannot export to ONNX: protobuf serialization failed");
  s->bytes = bytes.size();
  return bytes;
}

void write_onnx_file(const std::string& bytes, const std::string& path) {
  io::write_file_atomic(path, bytes);
  // Read it back: what we ship must parse and pass the checker from the file.
  ::onnx::ModelProto back;
  if (io::read_file(path) != bytes || !back.ParseFromString(bytes)) {
    std::remove(path.c_str());
    throw Error(path + ": the written ONNX model does not read back identically (removed)");
  }
  check(back);
}

}  // namespace prom::onnx_export
