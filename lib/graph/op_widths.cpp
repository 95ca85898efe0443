#include "graph/op_widths.h"

#include <algorithm>
#include <limits>

namespace prom::graph {

CodeRange code_range(const IntModel& m, int id) {
  for (const auto& op : m.ops) {
    if (op.output != id || op.kind != OpKind::kConv) continue;
    if (!op.table.defined()) return {op.clamp_lo, op.clamp_hi};
    return {std::min(0, op.table.min().item<int32_t>()), std::max(0, op.table.max().item<int32_t>())};
  }
  const bool is_unsigned = m.activations.at(static_cast<size_t>(id)).is_unsigned;
  return is_unsigned ? CodeRange{0, 255} : CodeRange{-128, 127};
}

AccumulatorRange accumulator_range(const IntOp& op, CodeRange in) {
  const torch::Tensor rows = op.weight.to(torch::kInt64).reshape({op.out_channels, -1});
  // Per product w * x with x in [lo, hi]: its smallest and largest value.
  const torch::Tensor at_lo = rows * in.lo, at_hi = rows * in.hi;
  const torch::Tensor low = torch::minimum(at_lo, at_hi).sum(1), high = torch::maximum(at_lo, at_hi).sum(1);
  // Zero padding and zero codes are inside [lo, hi] for both grids (lo <= 0 <= hi), so the
  // extremes above also bound every partial sum: each sums a subset of the products.
  return {std::min<int64_t>(0, low.min().item<int64_t>()), std::max<int64_t>(0, high.max().item<int64_t>())};
}

int significant_bits(int64_t m) {
  if (m == 0) return 0;
  uint64_t v = static_cast<uint64_t>(m < 0 ? -m : m);
  int low = 0, high = 0;
  while (!((v >> low) & 1)) ++low;
  for (int b = 0; b < 64; ++b)
    if ((v >> b) & 1) high = b;
  return high - low + 1;
}

int accumulator_bits_for(AccumulatorRange r) {
  return r.lo >= std::numeric_limits<int16_t>::min() && r.hi <= std::numeric_limits<int16_t>::max() ? 16 : 32;
}

OpWidths op_widths(const IntModel& m, size_t index) {
  const IntOp& op = m.ops.at(index);
  OpWidths w;
  switch (op.kind) {
    case OpKind::kConv: {
      w.accumulator_bits = accumulator_bits_for(accumulator_range(op, code_range(m, op.input)));
      const torch::Tensor mult = op.multiplier.to(torch::kInt64).contiguous();
      const int64_t* value = mult.data_ptr<int64_t>();
      w.requant_bits = 0;
      for (int64_t c = 0; c < mult.numel(); ++c) w.requant_bits = std::max(w.requant_bits, significant_bits(value[c]));
      break;
    }
    case OpKind::kLinear:
      w.accumulator_bits = accumulator_bits_for(accumulator_range(op, code_range(m, op.input)));
      w.requant_bits = 0;  // logits leave as int32: no requantization
      break;
    case OpKind::kAdd:
      w.requant_bits = std::max(significant_bits(op.add_mult_a), significant_bits(op.add_mult_b));
      break;
    case OpKind::kAvgPool: break;
    case OpKind::kMul: {  // feature code times gate code, then a fixed-point multiply
      const CodeRange x = code_range(m, op.input), g = code_range(m, op.input2);
      const int64_t p[4] = {int64_t{x.lo} * g.lo, int64_t{x.lo} * g.hi, int64_t{x.hi} * g.lo, int64_t{x.hi} * g.hi};
      w.accumulator_bits = accumulator_bits_for({*std::min_element(p, p + 4), *std::max_element(p, p + 4)});
      w.requant_bits = significant_bits(op.mul_multiplier);
      break;
    }
  }
  return w;
}

}  // namespace prom::graph
