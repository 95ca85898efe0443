// The arithmetic widths an op of the integer graph needs, read off the exported integers themselves:
// what the energy report charges and what the engine's count carries.
//  - accumulator: every partial sum of sum(weight code * input code), in any order, lies between the
//    sum of the negative products and the sum of the positive ones (each at its extreme input code);
//    16 bits when that interval fits int16 for every output channel, 32 otherwise. The bias and the
//    fractional bias bits are added in requantization, in 32 bits.
//  - requantization: the significant bits of the fixed-point multipliers (31 for a full int32
//    mantissa, 1 for a power of two, which is a rounding shift and no multiply).
#pragma once
#include <cstddef>
#include <cstdint>

#include "graph/int_model.h"

namespace prom::graph {

struct CodeRange {
  int32_t lo = 0, hi = 0;
};

struct AccumulatorRange {
  int64_t lo = 0, hi = 0;  // over all output channels: the most negative and most positive partial sum
};

struct OpWidths {
  int accumulator_bits = 32;  // conv/linear: 16 or 32 (add/pool: 32)
  int requant_bits = 32;      // conv/add: significant bits of the largest multiplier; pool: 32 (a division)
  bool operator==(const OpWidths& o) const {
    return accumulator_bits == o.accumulator_bits && requant_bits == o.requant_bits;
  }
};

// The codes activation `id` can hold: its producer's clamp (a conv's ReLU6 code), else its grid.
CodeRange code_range(const IntModel& model, int id);
// Conv/linear op: the accumulator's reach over every input in `input` (exact for the weights given).
AccumulatorRange accumulator_range(const IntOp& op, CodeRange input);
// Bits of a multiplier from its first to its last set bit (0 for 0).
int significant_bits(int64_t multiplier);
// Accumulators of 16 bits when [lo, hi] fits int16.
int accumulator_bits_for(AccumulatorRange range);

OpWidths op_widths(const IntModel& model, size_t index);

}  // namespace prom::graph
