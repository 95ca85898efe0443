#include "model/summary.h"

#include <cstdio>
#include <sstream>

namespace prom::model {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s;
}

std::string grouped(int64_t v) {
  std::string digits = std::to_string(v), out;
  int n = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (n && n % 3 == 0) out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++n;
  }
  return out;
}

}  // namespace

ModelSummary summarize(const ClassifierModel& model, int64_t input_size) {
  ModelSummary s;
  const auto& layers = model.layers();
  s.layers.resize(layers.size());
  // Spatial size of every graph tensor (tensor 0: the input image).
  std::vector<std::pair<int64_t, int64_t>> size{{input_size, input_size}};
  for (const auto& node : model.graph()) {
    auto [h, w] = size.at(node.inputs.at(0));
    if (node.kind == NodeKind::kGlobalAvgPool || node.kind == NodeKind::kLinear) h = w = 1;
    if (node.layer >= 0) {
      const LayerInfo& info = layers.at(node.layer);
      LayerSummary& row = s.layers[node.layer];
      row.name = info.name;
      row.role = info.role;
      if (info.is_linear) {
        row.weight_shape = info.linear->weight.sizes().vec();
        row.params = info.linear->weight.numel() + (info.linear->bias.defined() ? info.linear->bias.numel() : 0);
        row.macs = info.in_channels * info.out_channels;
      } else {
        h = (h + 2 * info.padding - info.kernel) / info.stride + 1;
        w = (w + 2 * info.padding - info.kernel) / info.stride + 1;
        row.out_h = h;
        row.out_w = w;
        row.weight_shape = info.conv->weight.sizes().vec();
        row.params = info.conv->weight.numel();
        if (info.conv->bias.defined()) row.params += info.conv->bias.numel();
        row.macs = info.out_channels * h * w * (info.in_channels / info.groups) * info.kernel * info.kernel;
      }
      if (info.bn) row.params += info.bn->weight.numel() + info.bn->bias.numel();
      s.total_params += row.params;
      s.total_macs += row.macs;
    }
    size.emplace_back(h, w);
  }
  return s;
}

std::string format_summary(const ModelSummary& summary, const std::string& title) {
  std::ostringstream out;
  char line[256];
  out << title << "\n";
  std::snprintf(line, sizeof line, "%-24s %-18s %-14s %-9s %12s %14s\n", "layer", "role", "weight", "output",
                "params", "MACs");
  out << line;
  for (const auto& r : summary.layers) {
    std::string output = std::to_string(r.out_h) + "x" + std::to_string(r.out_w);
    std::snprintf(line, sizeof line, "%-24s %-18s %-14s %-9s %12s %14s\n", r.name.c_str(), role_name(r.role),
                  shape_text(r.weight_shape).c_str(), output.c_str(), grouped(r.params).c_str(),
                  grouped(r.macs).c_str());
    out << line;
  }
  std::snprintf(line, sizeof line, "total: %s params, %.2f M MACs (%s) in %zu weighted layers\n",
                grouped(summary.total_params).c_str(), summary.total_macs / 1e6, grouped(summary.total_macs).c_str(),
                summary.layers.size());
  out << line;
  return out.str();
}

}  // namespace prom::model
