#include "graph/int_model.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace prom::graph {
namespace {

using json = nlohmann::json;

// Bounds a file must respect before anything is allocated from what it declares.
constexpr int64_t kMaxChannels = 1 << 16;
constexpr int64_t kMaxKernel = 15;
constexpr int64_t kMaxSpatial = 1 << 14;
constexpr size_t kMaxOps = 1 << 14;
// The engine holds every activation at once; a file declaring more values than this (MobileNetV2
// at 224 px has about 6 million) would make it allocate from sizes nothing else checks.
constexpr int64_t kMaxActivationValues = int64_t{1} << 30;

torch::ScalarType dtype_of(const torch::Tensor& t) { return t.scalar_type(); }

}  // namespace

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::kConv: return "conv";
    case OpKind::kAdd: return "add";
    case OpKind::kAvgPool: return "avgpool";
    case OpKind::kLinear: return "linear";
    case OpKind::kMul: return "mul";
  }
  return "?";
}

bool needs_v3(const IntModel& m) {
  for (const auto& op : m.ops)
    if (op.kind == OpKind::kMul || op.table.defined()) return true;
  return false;
}

std::vector<uint8_t> pack_ternary(const torch::Tensor& codes_in, const std::string& packing) {
  torch::Tensor codes = codes_in.to(torch::kInt8).contiguous().flatten();
  const int8_t* c = codes.data_ptr<int8_t>();
  int64_t n = codes.numel();
  std::vector<uint8_t> out;
  if (packing == "2bit") {
    out.assign((n + 3) / 4, 0);
    for (int64_t i = 0; i < n; ++i) {
      uint8_t bits = c[i] == 1 ? 1 : c[i] == -1 ? 2 : 0;
      out[i / 4] |= static_cast<uint8_t>(bits << (2 * (i % 4)));
    }
  } else if (packing == "base3") {
    out.assign((n + 4) / 5, 0);
    static const int pow3[5] = {1, 3, 9, 27, 81};
    for (int64_t i = 0; i < n; ++i) out[i / 5] = static_cast<uint8_t>(out[i / 5] + (c[i] + 1) * pow3[i % 5]);
  } else {
    throw ConfigError("unknown ternary packing '" + packing + "' (2bit or base3)");
  }
  return out;
}

torch::Tensor unpack_ternary(const uint8_t* data, size_t bytes, int64_t count, const std::string& packing,
                             const std::string& origin) {
  torch::Tensor codes = torch::empty({count}, torch::kInt8);
  int8_t* c = codes.data_ptr<int8_t>();
  if (packing == "2bit") {
    if (bytes != static_cast<size_t>((count + 3) / 4)) throw Error(origin + ": packed ternary size mismatch");
    for (int64_t i = 0; i < count; ++i) {
      int bits = (data[i / 4] >> (2 * (i % 4))) & 3;
      if (bits == 3) throw Error(origin + ": invalid 2-bit ternary code 11 at weight " + std::to_string(i));
      c[i] = static_cast<int8_t>(bits == 1 ? 1 : bits == 2 ? -1 : 0);
    }
  } else if (packing == "base3") {
    if (bytes != static_cast<size_t>((count + 4) / 5)) throw Error(origin + ": packed ternary size mismatch");
    for (size_t j = 0; j < bytes; ++j)
      if (data[j] > 242) throw Error(origin + ": invalid base-3 ternary byte " + std::to_string(data[j]));
    for (int64_t i = 0; i < count; ++i) {
      int v = data[i / 5];
      for (int k = 0; k < i % 5; ++k) v /= 3;
      c[i] = static_cast<int8_t>(v % 3 - 1);
    }
  } else {
    throw Error(origin + ": unknown ternary packing '" + packing + "'");
  }
  return codes;
}

std::string encode_int_model(const IntModel& m) {
  io::TensorFile file;
  json graph;
  graph["arch"] = m.arch;
  graph["classes"] = m.classes;
  graph["input_size"] = m.input_size;
  graph["preprocess"] = {{"resize", m.preprocess.resize}, {"crop", m.preprocess.crop},
                         {"mean", m.preprocess.mean},     {"std", m.preprocess.std}};
  graph["ternary_packing"] = m.ternary_packing;
  graph["input"] = m.input;
  graph["output"] = m.output;
  json acts = json::array();
  for (const auto& a : m.activations)
    acts.push_back({{"scale", a.scale}, {"unsigned", a.is_unsigned}, {"channels", a.channels},
                    {"height", a.height}, {"width", a.width}});
  graph["activations"] = acts;
  json ops = json::array();
  for (const auto& op : m.ops) {
    json j = {{"kind", op_kind_name(op.kind)}, {"name", op.name}, {"input", op.input}, {"output", op.output}};
    if (op.kind == OpKind::kAdd) {
      j["input2"] = op.input2;
      j["add_mult_a"] = op.add_mult_a;
      j["add_mult_b"] = op.add_mult_b;
      j["add_shift"] = op.add_shift;
    }
    if (op.kind == OpKind::kMul) {
      j["input2"] = op.input2;
      j["mul_multiplier"] = op.mul_multiplier;
      j["mul_shift"] = op.mul_shift;
    }
    if (op.kind == OpKind::kConv || op.kind == OpKind::kLinear) {
      j["role"] = model::role_name(op.role);
      j["in_channels"] = op.in_channels;
      j["out_channels"] = op.out_channels;
      j["kernel"] = op.kernel;
      j["stride"] = op.stride;
      j["padding"] = op.padding;
      j["groups"] = op.groups;
      j["ternary"] = op.ternary;
      j["relu6"] = op.relu6;
      j["acc_shift"] = op.acc_shift;
      if (op.kind == OpKind::kConv) {
        j["clamp_lo"] = op.clamp_lo;
        j["clamp_hi"] = op.clamp_hi;
      }
      if (op.table.defined()) {
        j["activation"] = model::activation_name(op.activation);
        file.tensors[op.name + ".table"] = op.table.to(torch::kInt32).contiguous();
      }
      j["weight_shape"] = op.weight.sizes().vec();
      if (op.ternary) {
        auto packed = pack_ternary(op.weight, m.ternary_packing);
        file.tensors[op.name + ".weight_ternary"] =
            torch::from_blob(packed.data(), {static_cast<int64_t>(packed.size())}, torch::kUInt8).clone();
      } else {
        file.tensors[op.name + ".weight"] = op.weight.to(torch::kInt8).contiguous();
      }
      file.tensors[op.name + ".bias"] = op.bias.to(torch::kInt32).contiguous();
      file.tensors[op.name + ".weight_scale"] = op.weight_scale.to(torch::kFloat32).contiguous();
      if (op.kind == OpKind::kConv) {
        file.tensors[op.name + ".multiplier"] = op.multiplier.to(torch::kInt32).contiguous();
        file.tensors[op.name + ".right_shift"] = op.right_shift.to(torch::kInt32).contiguous();
      } else {
        file.tensors[op.name + ".output_scale"] = op.output_scale.to(torch::kFloat32).contiguous();
      }
    }
    ops.push_back(j);
  }
  graph["ops"] = ops;
  file.metadata["format"] = needs_v3(m) ? kFormatNameV3 : kFormatName;
  file.metadata["prom_version"] = m.prom_version;
  file.metadata["graph"] = graph.dump();
  return io::encode_safetensors(file);
}

void save_int_model(const IntModel& model, const std::string& path) {
  io::write_file_atomic(path, encode_int_model(model));
}

namespace {

struct Loader {
  const std::string& origin;
  io::TensorFile& file;
  bool v3 = false;  // the file is prom-int-v3 (tables and mul ops allowed)

  [[noreturn]] void fail(const std::string& what) const { throw Error(origin + ": invalid prom model: " + what); }

  torch::Tensor tensor(const std::string& name, torch::ScalarType type, const std::vector<int64_t>& shape) const {
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) fail("missing tensor '" + name + "'");
    if (dtype_of(it->second) != type) fail("tensor '" + name + "' has the wrong dtype");
    if (it->second.sizes().vec() != shape) fail("tensor '" + name + "' has the wrong shape");
    return it->second;
  }

  // nlohmann converts a JSON float to an integer with a plain cast, undefined behaviour for 1e300:
  // integer fields must hold JSON integers.
  static bool holds_integers(const json& v) {
    if (!v.is_array()) return v.is_number_integer();
    return std::all_of(v.begin(), v.end(), [](const json& x) { return x.is_number_integer(); });
  }

  template <class T>
  T get(const json& j, const char* key, const std::string& where) const {
    if (!j.contains(key)) fail(where + ": missing '" + key + "'");
    if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, std::vector<int64_t>>)
      if (!holds_integers(j.at(key))) fail(where + ": '" + key + "' has the wrong type (expected an integer)");
    try {
      return j.at(key).get<T>();
    } catch (const json::exception&) {
      fail(where + ": '" + key + "' has the wrong type");
    }
  }

  int64_t bounded(const json& j, const char* key, const std::string& where, int64_t lo, int64_t hi) const {
    auto v = get<int64_t>(j, key, where);
    if (v < lo || v > hi) fail(where + ": '" + key + "' = " + std::to_string(v) + " is out of range");
    return v;
  }
};

// The engine computes acc * 2^acc_shift + bias in int32: a file whose weights, input grid and biases
// could overflow it (undefined behaviour) is refused, naming the layer.
void check_accumulator_range(const Loader& L, const IntOp& op, const Activation& in, const std::string& where) {
  const double in_max = in.is_unsigned ? 255 : 128;
  torch::Tensor l1 = op.weight.reshape({op.out_channels, -1}).to(torch::kInt64).abs().sum(1).to(torch::kFloat64);
  torch::Tensor worst = l1 * in_max * std::ldexp(1.0, static_cast<int>(op.acc_shift)) + op.bias.to(torch::kFloat64).abs();
  if (worst.max().item<double>() >= std::ldexp(1.0, 31))
    L.fail(where + " (" + op.name + "): accumulator and bias can overflow int32");
}

}  // namespace

IntModel load_int_model(const std::string& path) { return decode_int_model(io::read_file(path), path); }

namespace {

void decode_header(const Loader& L, const json& g, IntModel* m) {
  m->arch = L.get<std::string>(g, "arch", "graph");
  m->classes = L.get<std::vector<std::string>>(g, "classes", "graph");
  m->input_size = L.bounded(g, "input_size", "graph", 1, kMaxSpatial);
  json pre = L.get<json>(g, "preprocess", "graph");
  m->preprocess.resize = L.bounded(pre, "resize", "preprocess", 0, kMaxSpatial);
  m->preprocess.crop = L.bounded(pre, "crop", "preprocess", 0, kMaxSpatial);
  m->preprocess.mean = L.get<std::vector<double>>(pre, "mean", "preprocess");
  m->preprocess.std = L.get<std::vector<double>>(pre, "std", "preprocess");
  m->ternary_packing = L.get<std::string>(g, "ternary_packing", "graph");
  if (m->ternary_packing != "2bit" && m->ternary_packing != "base3") L.fail("unknown ternary_packing");
}

void decode_activations(const Loader& L, const json& g, IntModel* mp) {
  IntModel& m = *mp;
  json acts = L.get<json>(g, "activations", "graph");
  if (!acts.is_array() || acts.empty() || acts.size() > kMaxOps) L.fail("activations must be a non-empty list");
  int64_t activation_values = 0;
  for (size_t i = 0; i < acts.size(); ++i) {
    std::string where = "activation " + std::to_string(i);
    Activation a;
    a.scale = L.get<double>(acts[i], "scale", where);
    if (!(a.scale > 0) || !std::isfinite(a.scale)) L.fail(where + ": scale must be positive");
    a.is_unsigned = L.get<bool>(acts[i], "unsigned", where);
    a.channels = L.bounded(acts[i], "channels", where, 1, kMaxChannels);
    a.height = L.bounded(acts[i], "height", where, 1, kMaxSpatial);
    a.width = L.bounded(acts[i], "width", where, 1, kMaxSpatial);
    m.activations.push_back(a);
    activation_values += a.channels * a.height * a.width;
    if (activation_values > kMaxActivationValues)
      L.fail("activations hold more than " + std::to_string(kMaxActivationValues) + " values in all");
  }
}

// A conv or linear op's attributes, checked against its activations; returns its weight shape.
std::vector<int64_t> decode_layer_fields(const Loader& L, const json& j, const std::string& where, IntOp& op,
                                         const Activation& in, const Activation& out) {
  try {
    op.role = model::role_from_name(L.get<std::string>(j, "role", where));
  } catch (const ConfigError& e) {  // a bad file, not a bad config: exit 1, naming the file
    L.fail(where + ": " + e.what());
  }
  op.in_channels = L.bounded(j, "in_channels", where, 1, kMaxChannels);
  op.out_channels = L.bounded(j, "out_channels", where, 1, kMaxChannels);
  op.kernel = L.bounded(j, "kernel", where, 1, kMaxKernel);
  op.stride = L.bounded(j, "stride", where, 1, kMaxKernel);
  op.padding = L.bounded(j, "padding", where, 0, kMaxKernel);
  op.groups = L.bounded(j, "groups", where, 1, kMaxChannels);
  op.ternary = L.get<bool>(j, "ternary", where);
  op.relu6 = L.get<bool>(j, "relu6", where);
  op.acc_shift = L.bounded(j, "acc_shift", where, 0, 24);
  if (op.kind == OpKind::kConv) {
    // With a table the clamp is on the signed pre-activation grid (decode_table).
    const bool table = j.contains("activation");
    const int32_t lo = out.is_unsigned && !table ? 0 : -128, hi = out.is_unsigned ? 255 : 127;
    op.clamp_lo = static_cast<int32_t>(L.bounded(j, "clamp_lo", where, lo, hi));
    op.clamp_hi = static_cast<int32_t>(L.bounded(j, "clamp_hi", where, op.clamp_lo, hi));
  }
  if (op.in_channels % op.groups || op.out_channels % op.groups) L.fail(where + ": groups do not divide channels");
  if (in.channels != op.in_channels || out.channels != op.out_channels)
    L.fail(where + ": channel counts disagree with its activations");
  std::vector<int64_t> wshape;
  if (op.kind == OpKind::kConv) {
    wshape = {op.out_channels, op.in_channels / op.groups, op.kernel, op.kernel};
    int64_t oh = (in.height + 2 * op.padding - op.kernel) / op.stride + 1;
    int64_t ow = (in.width + 2 * op.padding - op.kernel) / op.stride + 1;
    if (in.height + 2 * op.padding < op.kernel || in.width + 2 * op.padding < op.kernel || oh != out.height ||
        ow != out.width)
      L.fail(where + ": output size disagrees with the convolution");
  } else {
    wshape = {op.out_channels, op.in_channels};
    if (in.height != 1 || in.width != 1) L.fail(where + ": linear input must be Cx1x1");
  }
  if (L.get<std::vector<int64_t>>(j, "weight_shape", where) != wshape) L.fail(where + ": weight_shape mismatch");
  return wshape;
}

// model::Activation by name; only those the format computes by tables.
model::Activation table_activation(const Loader& L, const std::string& name, const std::string& where) {
  for (auto a : {model::Activation::kHardswish, model::Activation::kHardsigmoid, model::Activation::kSilu,
                 model::Activation::kSigmoid})
    if (name == model::activation_name(a)) return a;
  L.fail(where + ": unknown table activation '" + name + "'");
}

// A conv's activation table (v3): requantized to the signed pre-activation grid, then looked up.
void decode_table(const Loader& L, const json& j, const std::string& where, IntOp& op, const Activation& out) {
  if (!L.v3) L.fail(where + ": an activation table needs format " + kFormatNameV3);
  if (op.kind != OpKind::kConv) L.fail(where + ": only a conv has an activation table");
  op.activation = table_activation(L, L.get<std::string>(j, "activation", where), where);
  if (op.relu6 || op.clamp_lo < -128 || op.clamp_hi > 127)
    L.fail(where + ": a table reads signed pre-activation codes (clamp within [-128, 127], no relu6)");
  op.table = L.tensor(op.name + ".table", torch::kInt32, {256});
  const int32_t lo = out.is_unsigned ? 0 : -128, hi = out.is_unsigned ? 255 : 127;
  if (op.table.min().item<int32_t>() < lo || op.table.max().item<int32_t>() > hi)
    L.fail(where + ": table codes outside the output grid [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// ... then its weights and integers.
void decode_layer(const Loader& L, const json& j, const std::string& where, const IntModel& m, IntOp& op,
                  const Activation& in, const Activation& out, const std::string& path) {
  const std::vector<int64_t> wshape = decode_layer_fields(L, j, where, op, in, out);
  int64_t count = 1;
  for (auto d : wshape) count *= d;
  if (op.ternary) {
    int64_t bytes = m.ternary_packing == "2bit" ? (count + 3) / 4 : (count + 4) / 5;
    auto packed = L.tensor(op.name + ".weight_ternary", torch::kUInt8, {bytes});
    op.weight = unpack_ternary(packed.data_ptr<uint8_t>(), static_cast<size_t>(bytes), count,
                               m.ternary_packing, path)
                    .reshape(wshape);
  } else {
    op.weight = L.tensor(op.name + ".weight", torch::kInt8, wshape);
  }
  op.bias = L.tensor(op.name + ".bias", torch::kInt32, {op.out_channels});
  op.weight_scale = L.tensor(op.name + ".weight_scale", torch::kFloat32, {op.out_channels});
  if (op.kind == OpKind::kConv) {
    op.multiplier = L.tensor(op.name + ".multiplier", torch::kInt32, {op.out_channels});
    op.right_shift = L.tensor(op.name + ".right_shift", torch::kInt32, {op.out_channels});
    if (op.multiplier.min().item<int32_t>() < 0) L.fail(where + ": negative multiplier");
    if (op.right_shift.min().item<int32_t>() < 0 || op.right_shift.max().item<int32_t>() > 63)
      L.fail(where + ": right_shift out of [0, 63]");
  } else {
    op.output_scale = L.tensor(op.name + ".output_scale", torch::kFloat32, {op.out_channels});
  }
  check_accumulator_range(L, op, in, where);
  if (j.contains("activation")) decode_table(L, j, where, op, out);
}

IntOp decode_op(const Loader& L, const json& j, const std::string& where, const IntModel& m,
                const std::vector<bool>& defined, const std::string& path) {
  const int n_act = static_cast<int>(m.activations.size());
  IntOp op;
  std::string kind = L.get<std::string>(j, "kind", where);
  if (kind == "conv") op.kind = OpKind::kConv;
  else if (kind == "add") op.kind = OpKind::kAdd;
  else if (kind == "avgpool") op.kind = OpKind::kAvgPool;
  else if (kind == "linear") op.kind = OpKind::kLinear;
  else if (kind == "mul" && L.v3) op.kind = OpKind::kMul;
  else L.fail(where + ": unknown kind '" + kind + "'");
  op.name = L.get<std::string>(j, "name", where);
  op.input = static_cast<int>(L.bounded(j, "input", where, 0, n_act - 1));
  op.output = static_cast<int>(L.bounded(j, "output", where, 0, n_act - 1));
  if (!defined[op.input]) L.fail(where + ": reads activation " + std::to_string(op.input) + " before it is written");
  if (defined[op.output]) L.fail(where + ": writes activation " + std::to_string(op.output) + " twice");
  const Activation& in = m.activations[op.input];
  const Activation& out = m.activations[op.output];
  if (op.kind == OpKind::kAdd) {
    op.input2 = static_cast<int>(L.bounded(j, "input2", where, 0, n_act - 1));
    if (!defined[op.input2]) L.fail(where + ": reads an activation before it is written");
    op.add_mult_a = L.bounded(j, "add_mult_a", where, 0, 1ll << 31);
    op.add_mult_b = L.bounded(j, "add_mult_b", where, 0, 1ll << 31);
    op.add_shift = L.bounded(j, "add_shift", where, 0, 40);
    const Activation& in2 = m.activations[op.input2];
    if (in.channels != out.channels || in2.channels != out.channels || in.height != out.height ||
        in2.height != out.height || in.width != out.width || in2.width != out.width)
      L.fail(where + ": add operands and result differ in shape");
  } else if (op.kind == OpKind::kMul) {
    op.input2 = static_cast<int>(L.bounded(j, "input2", where, 0, n_act - 1));
    if (!defined[op.input2]) L.fail(where + ": reads an activation before it is written");
    op.mul_multiplier = L.bounded(j, "mul_multiplier", where, 0, (1ll << 31) - 1);
    op.mul_shift = L.bounded(j, "mul_shift", where, 0, 62);
    const Activation& gate = m.activations[op.input2];
    if (in.channels != out.channels || in.height != out.height || in.width != out.width ||
        gate.channels != out.channels || gate.height != 1 || gate.width != 1)
      L.fail(where + ": mul must scale CxHxW by a Cx1x1 gate into CxHxW");
  } else if (op.kind == OpKind::kAvgPool) {
    if (in.channels != out.channels || out.height != 1 || out.width != 1)
      L.fail(where + ": avgpool must map CxHxW to Cx1x1");
  } else {
    decode_layer(L, j, where, m, op, in, out, path);
  }
  return op;
}

}  // namespace

IntModel decode_int_model(const std::string& bytes, const std::string& path) {
  io::TensorFile file = io::decode_safetensors(bytes, path);
  Loader L{path, file};
  L.v3 = file.metadata["format"] == kFormatNameV3;
  if (file.metadata["format"] != kFormatName && !L.v3)
    L.fail("format is '" + file.metadata["format"] + "', expected " + kFormatName + " or " + kFormatNameV3);
  json g;
  try {
    g = json::parse(file.metadata["graph"]);
  } catch (const json::exception& e) {
    L.fail(std::string("graph metadata is not JSON: ") + e.what());
  }
  if (!g.is_object()) L.fail("graph metadata is not an object");
  IntModel m;
  m.prom_version = file.metadata["prom_version"];
  decode_header(L, g, &m);
  decode_activations(L, g, &m);
  const int n_act = static_cast<int>(m.activations.size());
  m.input = static_cast<int>(L.bounded(g, "input", "graph", 0, n_act - 1));
  m.output = static_cast<int>(L.bounded(g, "output", "graph", 0, n_act - 1));
  json ops = L.get<json>(g, "ops", "graph");
  if (!ops.is_array() || ops.empty() || ops.size() > kMaxOps) L.fail("ops must be a non-empty list");
  std::vector<bool> defined(n_act, false);
  defined[m.input] = true;
  for (size_t i = 0; i < ops.size(); ++i) {
    IntOp op = decode_op(L, ops[i], "op " + std::to_string(i), m, defined, path);
    defined[op.output] = true;
    m.ops.push_back(op);
  }
  if (!defined[m.output]) L.fail("the output activation is never written");
  if (m.ops.back().kind != OpKind::kLinear || m.ops.back().output != m.output)
    L.fail("the graph must end with the linear classifier writing the output");
  if (m.classes.size() != static_cast<size_t>(m.ops.back().out_channels))
    L.fail("class list has " + std::to_string(m.classes.size()) + " names for " +
           std::to_string(m.ops.back().out_channels) + " outputs");
  return m;
}

}  // namespace prom::graph
