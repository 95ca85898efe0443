#include "energy/report.h"

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "model/registry.h"
#include "model/summary.h"
#include "quant/activation_table.h"
#include "quant/int_layer.h"
#include "quant/policy.h"

namespace prom::energy {

using graph::OpKind;

std::vector<OpSpec> specs_from_int_model(const graph::IntModel& m) {
  std::vector<OpSpec> specs;
  for (size_t index = 0; index < m.ops.size(); ++index) {
    const graph::IntOp& op = m.ops[index];
    const auto& in = m.activations[op.input];
    const auto& out = m.activations[op.output];
    OpSpec s;
    s.name = op.name.empty() ? graph::op_kind_name(op.kind) : op.name;
    s.kind = op.kind;
    s.role = op.role;
    s.in_channels = in.channels;
    s.out_channels = out.channels;
    s.in_h = in.height;
    s.in_w = in.width;
    s.out_h = out.height;
    s.out_w = out.width;
    s.widths = graph::op_widths(m, index);
    if (op.kind == OpKind::kConv || op.kind == OpKind::kLinear) {
      s.kernel = op.kernel;
      s.groups = op.groups;
      s.ternary = op.ternary;
      s.weights = op.weight.numel();
      s.nonzero_weights = op.ternary ? op.weight.ne(0).sum().item<int64_t>() : s.weights;
      s.float_params = s.weights + (op.kind == OpKind::kConv ? 2 * s.out_channels : s.out_channels);
      s.float_macs = op.kind == OpKind::kConv ? s.weights * s.out_h * s.out_w : s.weights;
      s.table = op.table.defined();
    }
    if (op.kind == OpKind::kMul) s.float_macs = s.out_channels * s.out_h * s.out_w;
    specs.push_back(s);
  }
  return specs;
}

namespace {

// The spec of a conv/linear layer under its policy rule (ternary density: the share of non-zero codes).
OpSpec layer_spec(const model::LayerInfo& l, const quant::LayerAssignment& a, const model::LayerSummary& summary,
                  double ternary_density, int multiplier_bits, const std::string& source) {
  if (a.weight.type == "none" || a.input.type == "none")
    throw ConfigError(source + ": quant: layer " + l.name +
                      " is not fully quantized; the integer model needs every layer quantized");
  OpSpec s;
  s.name = l.name;
  s.kind = l.is_linear ? OpKind::kLinear : OpKind::kConv;
  s.role = l.role;
  s.in_channels = l.in_channels;
  s.out_channels = l.out_channels;
  s.kernel = l.kernel;
  s.groups = l.groups;
  s.ternary = a.weight.type == "ternary";
  s.weights = l.is_linear ? l.in_channels * l.out_channels
                          : l.out_channels * (l.in_channels / l.groups) * l.kernel * l.kernel;
  s.float_params = summary.params;
  s.float_macs = summary.macs;
  // Worst case: every non-zero weight of a row at its largest code, every input at its largest
  // magnitude; under accumulator: int16 a row keeps at most kInt16TernaryPerSign of each sign.
  const int64_t row = s.weights / s.out_channels;
  const bool capped = s.ternary && a.weight.accumulator == "int16";
  int64_t nonzero_row = s.ternary ? std::min<int64_t>(row, std::llround(ternary_density * row)) : row;
  s.nonzero_weights = s.ternary ? static_cast<int64_t>(std::llround(ternary_density * s.weights)) : s.weights;
  if (capped && nonzero_row > 2 * config::kInt16TernaryPerSign) {  // the cap binds: full rows of both signs
    nonzero_row = 2 * config::kInt16TernaryPerSign;
    s.nonzero_weights = nonzero_row * s.out_channels;
  }
  // The most non-zero codes of one sign a row can have; its sum reaches 255 each (uint8 inputs), or
  // 128 each and 127 for the rest of the row (int8 inputs: -128 * -1, 127 * 1).
  const int64_t one_sign = capped ? std::min<int64_t>(nonzero_row, config::kInt16TernaryPerSign) : nonzero_row;
  const int64_t reach = !s.ternary          ? nonzero_row * 127 * (a.input_unsigned ? 255 : 128)
                        : a.input_unsigned ? one_sign * 255
                                           : one_sign * 128 + (nonzero_row - one_sign) * 127;
  s.widths.accumulator_bits = graph::accumulator_bits_for({-reach, reach});
  s.widths.requant_bits = l.is_linear ? 0 : multiplier_bits;
  return s;
}

}  // namespace

// Walks the model's graph, as lowering does: no network-specific code.
std::vector<OpSpec> specs_from_config(const config::Config& config, double ternary_density) {
  if (!config.quant.enabled)
    throw ConfigError(config.source + ": quant: the energy and storage report needs quant.enabled and a policy");
  auto net = model::create_model(config.model);
  auto assignments = quant::resolve_policy(config.quant, *net);
  auto summary = model::summarize(*net, config.model.input_size);
  const auto& layers = net->layers();
  const int multiplier_bits = quant::requant_multiplier_bits(config.quant);
  struct Shape {
    int64_t c, h, w;
  };
  std::vector<Shape> shapes{{layers.at(0).in_channels, config.model.input_size, config.model.input_size}};
  std::vector<OpSpec> specs;
  const auto& graph = net->graph();
  for (size_t i = 0; i < graph.size(); ++i) {
    const auto& node = graph[i];
    const Shape in = shapes.at(node.inputs[0]);
    OpSpec s;
    if (node.kind == model::NodeKind::kConv || node.kind == model::NodeKind::kLinear) {
      s = layer_spec(layers[node.layer], assignments[node.layer], summary.layers[node.layer], ternary_density,
                     multiplier_bits, config.source);
      s.out_h = node.kind == model::NodeKind::kConv ? summary.layers[node.layer].out_h : 1;
      s.out_w = node.kind == model::NodeKind::kConv ? summary.layers[node.layer].out_w : 1;
      if (node.kind == model::NodeKind::kLinear && i + 1 < graph.size()) {
        // A hidden linear layer (MobileNetV3's head) is exported as a requantized 1x1 convolution.
        s.kind = OpKind::kConv;
        s.widths.requant_bits = multiplier_bits;
      }
      s.table = quant::needs_table(node.activation) && s.kind == OpKind::kConv;
    } else if (node.kind == model::NodeKind::kMul) {  // squeeze-and-excitation scaling
      s.name = model::node_kind_name(node.kind);
      s.kind = OpKind::kMul;
      s.in_channels = s.out_channels = in.c;
      s.out_h = in.h;
      s.out_w = in.w;
      s.float_macs = in.c * in.h * in.w;
      // Worst case of feature code x gate code (the gate is unsigned after its sigmoid). The features'
      // grid is the one the block's first layer reads, pooled.
      bool features_unsigned = false;
      for (const auto& reader : graph)
        if (reader.layer >= 0 && reader.inputs[0] > 0 && graph.at(reader.inputs[0] - 1).kind == model::NodeKind::kGlobalAvgPool &&
            graph.at(reader.inputs[0] - 1).inputs[0] == node.inputs[0])
          features_unsigned = assignments.at(reader.layer).input_unsigned;
      const int64_t feature = features_unsigned ? 255 : 128;
      s.widths.accumulator_bits = graph::accumulator_bits_for({-feature * 255, feature * 255});
      s.widths.requant_bits = multiplier_bits;
    } else {
      s.name = model::node_kind_name(node.kind);
      s.kind = node.kind == model::NodeKind::kAdd ? OpKind::kAdd : OpKind::kAvgPool;
      s.in_channels = s.out_channels = in.c;
      s.out_h = node.kind == model::NodeKind::kAdd ? in.h : 1;
      s.out_w = node.kind == model::NodeKind::kAdd ? in.w : 1;
      s.widths.requant_bits = node.kind == model::NodeKind::kAdd ? multiplier_bits : 32;  // pooling divides
    }
    s.in_h = in.h;
    s.in_w = in.w;
    shapes.push_back({s.out_channels, s.out_h, s.out_w});
    specs.push_back(s);
  }
  return specs;
}

std::vector<infer::LayerCounts> analytic_counts(const std::vector<OpSpec>& specs) {
  std::vector<infer::LayerCounts> out;
  for (const auto& s : specs) {
    infer::OpCounts c;
    const int64_t out_pixels = s.out_h * s.out_w;
    switch (s.kind) {
      case OpKind::kConv:
        // The engine runs ternary 1x1 layers on additions and any other ternary layer (the
        // all-ternary ablation's stem and depthwise 3x3) through its int8 kernels: counted as executed.
        if (s.ternary && s.kernel == 1 && s.groups == 1) {
          c.ternary_adds = s.nonzero_weights * out_pixels;
        } else {
          c.int8_mults = s.weights * out_pixels;
          c.int32_adds = s.weights * out_pixels;
        }
        c.int32_adds += s.out_channels * out_pixels;     // bias
        c.requant_mults = s.out_channels * out_pixels;  // requantization
        c.roundings = s.out_channels * out_pixels;
        if (s.table) c.lookups = s.out_channels * out_pixels;
        break;
      case OpKind::kAdd: {
        int64_t n = s.out_channels * out_pixels;
        c.requant_mults = 2 * n;
        c.int32_adds = n;
        c.roundings = n;
        break;
      }
      case OpKind::kAvgPool:
        c.int32_adds = s.in_channels * s.in_h * s.in_w;
        c.requant_mults = s.in_channels;
        c.roundings = s.in_channels;
        break;
      case OpKind::kLinear:
        c.int8_mults = s.weights;
        c.int32_adds = s.weights + s.out_channels;
        break;
      case OpKind::kMul: {  // one product per value, counted as a multiply-accumulate, then requantized
        const int64_t n = s.out_channels * out_pixels;
        c.int8_mults = n;
        c.int32_adds = n;
        c.requant_mults = n;
        c.roundings = n;
        break;
      }
    }
    out.push_back({s.name, s.kind, s.role, c, s.widths});
  }
  return out;
}

int64_t storage_bytes(const OpSpec& s, const std::string& packing) {
  switch (s.kind) {
    case OpKind::kConv: {
      int64_t w = s.ternary ? (packing == "base3" ? (s.weights + 4) / 5 : (s.weights + 3) / 4) : s.weights;
      return w + s.out_channels * 16 + (s.table ? 256 : 0);  // int32 bias, multiplier, shift; float32 weight
                                                              // scale; an 8-bit code per table entry
    }
    case OpKind::kMul: return 8;  // int32 multiplier and shift
    case OpKind::kLinear:
      return (s.ternary ? (packing == "base3" ? (s.weights + 4) / 5 : (s.weights + 3) / 4) : s.weights) +
             s.out_channels * 12;  // int32 bias; float32 weight and output scales
    default: return 0;
  }
}

namespace {

double add_pj(int bits, const config::EnergyConfig& e) {
  return bits <= 8 ? e.int8_add : bits <= 16 ? e.int16_add : e.int32_add;
}

// A multiply by a constant with `bits` significant bits: an array multiplier's partial products, and
// so its energy, scale with the constant's width; one bit (a power of two) is a shift, no multiply.
double constant_multiply_pj(int bits, const config::EnergyConfig& e) {
  return bits <= 1 ? 0.0 : e.int32_mult * std::min(bits, 32) / 32.0;
}

}  // namespace

// int32_adds holds the MAC accumulations (as many as int8_mults) plus the bias, residual and pooling adds.
double honest_energy_pj(const infer::OpCounts& c, const graph::OpWidths& w, const config::EnergyConfig& e) {
  const double accumulate = add_pj(w.accumulator_bits, e);
  return c.ternary_adds * accumulate + c.int8_mults * (e.int8_mult + accumulate) +
         (c.int32_adds - c.int8_mults) * e.int32_add + c.requant_mults * constant_multiply_pj(w.requant_bits, e) +
         c.roundings * e.int32_add + c.lookups * e.table_lookup;
}

double paper_energy_pj(const infer::OpCounts& c, const config::EnergyConfig& e) {
  return c.ternary_adds * e.int8_add + c.int8_mults * (e.int8_mult + e.int8_add) +
         (c.int32_adds - c.int8_mults) * e.int32_add + c.lookups * e.table_lookup;
}

namespace {

void accumulate(RoleFigures& r, const OpSpec& s, const infer::OpCounts& c, const config::EnergyConfig& e,
                const std::string& packing) {
  r.float_params += s.float_params;
  r.float_macs += s.float_macs;
  r.counts += c;
  r.accumulations += c.ternary_adds + c.int8_mults;
  if (s.widths.accumulator_bits <= 16) r.accumulations16 += c.ternary_adds + c.int8_mults;
  r.energy_pj += honest_energy_pj(c, s.widths, e);
  r.paper_pj += paper_energy_pj(c, e);
  r.fp16_pj += s.float_macs * (e.fp16_mult + e.fp16_add);
  r.fp32_pj += s.float_macs * (e.fp32_mult + e.fp32_add);
  r.bytes += storage_bytes(s, packing);
  r.fp16_bytes += 2 * s.float_params;
}

}  // namespace

Report make_report(const std::vector<OpSpec>& specs, const config::EnergyConfig& e, const std::string& packing) {
  Report rep;
  auto counts = analytic_counts(specs);
  std::map<std::string, size_t> index;
  std::vector<std::string> order;
  for (auto r : model::all_roles()) order.push_back(model::role_name(r));
  order.push_back("add");
  order.push_back("avgpool");
  order.push_back("mul");
  for (const auto& name : order) {
    index[name] = rep.roles.size();
    rep.roles.push_back({name});
  }
  rep.total.role = "total";
  std::vector<bool> present(rep.roles.size(), false);
  for (size_t i = 0; i < specs.size(); ++i) {
    std::string key = specs[i].kind == OpKind::kAdd       ? "add"
                      : specs[i].kind == OpKind::kAvgPool ? "avgpool"
                      : specs[i].kind == OpKind::kMul     ? "mul"
                                                          : model::role_name(specs[i].role);
    present[index[key]] = true;
    accumulate(rep.roles[index[key]], specs[i], counts[i].counts, e, packing);
    accumulate(rep.total, specs[i], counts[i].counts, e, packing);
    if (specs[i].ternary) {
      rep.ternary_weights += specs[i].weights;
      rep.ternary_nonzero += specs[i].nonzero_weights;
    }
  }
  // Only the roles the network has (MobileNetV2 has no squeeze-and-excitation, for one).
  std::vector<RoleFigures> roles;
  for (size_t r = 0; r < rep.roles.size(); ++r)
    if (present[r]) roles.push_back(rep.roles[r]);
  rep.roles = std::move(roles);
  rep.fp16_energy_ratio = rep.total.fp16_pj / rep.total.energy_pj;
  rep.fp32_energy_ratio = rep.total.fp32_pj / rep.total.energy_pj;
  rep.paper_fp16_energy_ratio = rep.total.fp16_pj / rep.total.paper_pj;
  rep.paper_fp32_energy_ratio = rep.total.fp32_pj / rep.total.paper_pj;
  rep.fp16_storage_ratio = static_cast<double>(rep.total.fp16_bytes) / rep.total.bytes;
  std::ostringstream conv;
  conv << "honest: ternary and MAC adds at each layer's accumulator width (16 or 32 bits, range analysis), "
          "bias/residual/pooling adds at 32 bits, requantization multiplies at the multiplier's width "
          "(int32 mult x bits / 32; a power of two is a shift), a 32-bit rounding add per output; "
          "paper_like: ternary and MAC adds as int8 adds, requantization and rounding not charged; "
          "both: a table lookup per output of a hardswish/sigmoid/SiLU layer, squeeze-and-excitation scaling as "
          "an int8 MAC + requantization per value; "
          "fp baselines: one mult + one add per MAC (activations not charged); pJ: int8 add "
       << e.int8_add << ", int16 add " << e.int16_add << ", int8 mult " << e.int8_mult << ", int32 add " << e.int32_add
       << ", int32 mult " << e.int32_mult << ", fp16 add " << e.fp16_add << ", fp16 mult " << e.fp16_mult
       << ", fp32 add " << e.fp32_add << ", fp32 mult " << e.fp32_mult << ", table lookup " << e.table_lookup;
  rep.conventions = conv.str();
  return rep;
}

std::string format_report(const Report& rep, bool show_energy, bool show_storage) {
  std::ostringstream out;
  char line[320];
  if (show_energy) {
    out << "energy per image (uJ) and operations (M)\n";
    std::snprintf(line, sizeof line, "%-18s %10s %10s %10s %10s %10s %8s %10s %10s %10s %10s\n", "role", "tern.adds",
                  "int8 mul", "int32 add", "requant", "lookups", "acc16 %", "honest uJ", "paper uJ", "fp16 uJ",
                  "fp32 uJ");
    out << line;
    auto row = [&](const RoleFigures& r) {
      const double share16 = r.accumulations > 0 ? 100.0 * r.accumulations16 / r.accumulations : 0.0;
      std::snprintf(line, sizeof line, "%-18s %10.2f %10.2f %10.2f %10.2f %10.2f %8.1f %10.3f %10.3f %10.3f %10.3f\n",
                    r.role.c_str(), r.counts.ternary_adds / 1e6, r.counts.int8_mults / 1e6, r.counts.int32_adds / 1e6,
                    r.counts.requant_mults / 1e6, r.counts.lookups / 1e6, share16, r.energy_pj / 1e6, r.paper_pj / 1e6, r.fp16_pj / 1e6,
                    r.fp32_pj / 1e6);
      out << line;
    };
    for (const auto& r : rep.roles) row(r);
    row(rep.total);
    std::snprintf(line, sizeof line,
                  "energy ratio (honest): %.2fx less than fp16, %.2fx less than fp32\n"
                  "energy ratio (paper-like): %.2fx less than fp16, %.2fx less than fp32\n",
                  rep.fp16_energy_ratio, rep.fp32_energy_ratio, rep.paper_fp16_energy_ratio, rep.paper_fp32_energy_ratio);
    out << line << "conventions: " << rep.conventions << "\n";
  }
  if (rep.ternary_weights > 0) {  // the share of ternary weights whose additions the counts include
    std::snprintf(line, sizeof line, "ternary weights: %lld, non-zero %lld (density %.4f)\n",
                  static_cast<long long>(rep.ternary_weights), static_cast<long long>(rep.ternary_nonzero),
                  static_cast<double>(rep.ternary_nonzero) / rep.ternary_weights);
    out << line;
  }
  if (show_storage) {
    out << "storage (bytes)\n";
    std::snprintf(line, sizeof line, "%-18s %12s %12s %12s\n", "role", "params", "prom", "fp16");
    out << line;
    auto row = [&](const RoleFigures& r) {
      std::snprintf(line, sizeof line, "%-18s %12lld %12lld %12lld\n", r.role.c_str(),
                    static_cast<long long>(r.float_params), static_cast<long long>(r.bytes),
                    static_cast<long long>(r.fp16_bytes));
      out << line;
    };
    for (const auto& r : rep.roles)
      if (r.bytes || r.fp16_bytes) row(r);
    row(rep.total);
    std::snprintf(line, sizeof line, "storage ratio: %.2fx less than fp16\n", rep.fp16_storage_ratio);
    out << line;
  }
  return out.str();
}

std::string report_json(const Report& rep) {
  using json = nlohmann::json;
  auto fig = [](const RoleFigures& r) {
    return json{{"role", r.role},
                {"float_params", r.float_params},
                {"float_macs", r.float_macs},
                {"ternary_adds", r.counts.ternary_adds},
                {"int8_mults", r.counts.int8_mults},
                {"int32_adds", r.counts.int32_adds},
                {"requant_mults", r.counts.requant_mults},
                {"roundings", r.counts.roundings},
                {"table_lookups", r.counts.lookups},
                {"accumulations", r.accumulations},
                {"accumulations_16bit", r.accumulations16},
                {"energy_pj", r.energy_pj},
                {"paper_like_energy_pj", r.paper_pj},
                {"fp16_energy_pj", r.fp16_pj},
                {"fp32_energy_pj", r.fp32_pj},
                {"bytes", r.bytes},
                {"fp16_bytes", r.fp16_bytes}};
  };
  json j;
  j["roles"] = json::array();
  for (const auto& r : rep.roles) j["roles"].push_back(fig(r));
  j["total"] = fig(rep.total);
  j["fp16_energy_ratio"] = rep.fp16_energy_ratio;
  j["fp32_energy_ratio"] = rep.fp32_energy_ratio;
  j["paper_like"] = {{"fp16_energy_ratio", rep.paper_fp16_energy_ratio},
                     {"fp32_energy_ratio", rep.paper_fp32_energy_ratio},
                     {"energy_pj", rep.total.paper_pj}};
  j["fp16_storage_ratio"] = rep.fp16_storage_ratio;
  j["ternary_weights"] = rep.ternary_weights;
  j["ternary_nonzero_weights"] = rep.ternary_nonzero;
  j["conventions"] = rep.conventions;
  return j.dump(2) + "\n";
}

}  // namespace prom::energy
