// Energy and storage of a PROM model against fp16/fp32 baselines. The operation counts come from an
// analytic model of the graph (shapes, quantization policy, non-zero ternary weights); tests require
// them, and the widths they run at, to equal what the integer engine counts when it runs.
// Two conventions, always both:
//  - honest (the default): every operation the exported model executes, at its width: ternary adds
//    and MAC adds at the op's accumulator width (graph/op_widths.h: 16 bits where a range analysis
//    proves it, else 32), int8 multiplies, bias/residual/pooling adds at 32 bits, requantization
//    multiplies at the multiplier's significant width (int32_mult * bits / 32; a power of two is a
//    shift, no multiply), one 32-bit rounding add per requantized, added or pooled output;
//  - paper_like: ternary and MAC adds as int8 adds, requantization and rounding not charged.
// Both charge an activation table lookup (hardswish, SiLU, sigmoid, ...) per output at
// EnergyConfig::table_lookup, and squeeze-and-excitation's feature x gate product as an int8
// multiply-accumulate plus its requantization. The float baselines charge one multiply-add per MAC
// (and per squeeze-and-excitation product) and nothing for activations.
#pragma once
#include <string>
#include <vector>

#include "config/config.h"
#include "graph/int_model.h"
#include "infer/op_counts.h"

namespace prom::energy {

// One op of the integer graph, as the analytic model sees it.
struct OpSpec {
  std::string name;
  graph::OpKind kind = graph::OpKind::kConv;
  model::LayerRole role = model::LayerRole::kStem;
  int64_t in_channels = 0, out_channels = 0, kernel = 1, groups = 1;
  int64_t in_h = 1, in_w = 1, out_h = 1, out_w = 1;
  bool ternary = false;
  bool table = false;           // conv: its activation is a table lookup per output
  int64_t weights = 0;          // weight count (conv/linear)
  int64_t nonzero_weights = 0;  // ternary: weights that are +1 or -1
  int64_t float_params = 0;     // parameters of the float layer (weights, bias, BN affine)
  int64_t float_macs = 0;       // multiply-accumulates of the float layer
  graph::OpWidths widths;       // accumulator and multiplier widths
};

// From an exported model (exact non-zero counts).
std::vector<OpSpec> specs_from_int_model(const graph::IntModel& model);
// From a config alone: the model and its quant policy; ternary layers are assumed to have
// `ternary_density` of their weights non-zero (1.0: dense, the upper bound), and accumulator widths
// come from the worst case of those counts (every weight at its largest code, every input at its
// largest magnitude); an exported model's exact weights can only narrow them.
std::vector<OpSpec> specs_from_config(const config::Config& config, double ternary_density);

// Operations per op for one image.
std::vector<infer::LayerCounts> analytic_counts(const std::vector<OpSpec>& specs);

// Storage bytes of the exported tensors, per op (what save_int_model writes as tensor data).
int64_t storage_bytes(const OpSpec& spec, const std::string& ternary_packing);

struct RoleFigures {
  std::string role;
  int64_t float_params = 0, float_macs = 0;
  infer::OpCounts counts{};
  int64_t accumulations = 0, accumulations16 = 0;  // ternary adds + MAC adds; those at 16 bits
  double energy_pj = 0, paper_pj = 0, fp16_pj = 0, fp32_pj = 0;  // honest and paper-like prom energy
  int64_t bytes = 0, fp16_bytes = 0;
};

struct Report {
  std::vector<RoleFigures> roles;  // per layer role, plus "add" and "avgpool"
  RoleFigures total;
  double fp16_energy_ratio = 0, fp32_energy_ratio = 0, fp16_storage_ratio = 0;  // honest
  double paper_fp16_energy_ratio = 0, paper_fp32_energy_ratio = 0;               // paper-like
  std::string conventions;  // both conventions and the pJ table, in words
  int64_t ternary_weights = 0, ternary_nonzero = 0;  // over all ternary layers (density: their ratio)
};

// Picojoules of one op's counts under each convention.
double honest_energy_pj(const infer::OpCounts& counts, const graph::OpWidths& widths, const config::EnergyConfig& e);
double paper_energy_pj(const infer::OpCounts& counts, const config::EnergyConfig& e);

Report make_report(const std::vector<OpSpec>& specs, const config::EnergyConfig& energy,
                   const std::string& ternary_packing);
std::string format_report(const Report& report, bool show_energy, bool show_storage);
std::string report_json(const Report& report);

}  // namespace prom::energy
