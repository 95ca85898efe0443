// Operations the integer engine executes, by kind: what the energy model charges.
#pragma once
#include <cstdint>
#include <string>

#include "graph/int_model.h"
#include "graph/op_widths.h"

namespace prom::infer {

struct OpCounts {
  int64_t ternary_adds = 0;   // additions/subtractions of activations selected by a ternary weight
  int64_t int8_mults = 0;     // int8 x int8 multiplies (of int8 multiply-accumulates)
  int64_t int32_adds = 0;     // int32 accumulations, bias adds, residual sums, pooling sums
  int64_t requant_mults = 0;  // fixed-point multiplies of requantization (and residual/pool rescaling)
  int64_t roundings = 0;      // rounding adds of requantization, residual adds and pooling: one per output
  int64_t lookups = 0;        // activation table lookups (hardswish, sigmoid, ...): one per output
  OpCounts& operator+=(const OpCounts& o) {
    lookups += o.lookups;
    ternary_adds += o.ternary_adds;
    int8_mults += o.int8_mults;
    int32_adds += o.int32_adds;
    requant_mults += o.requant_mults;
    roundings += o.roundings;
    return *this;
  }
  bool operator==(const OpCounts& o) const {
    return ternary_adds == o.ternary_adds && int8_mults == o.int8_mults && int32_adds == o.int32_adds &&
           requant_mults == o.requant_mults && roundings == o.roundings && lookups == o.lookups;
  }
};

// Counts for one op of the graph, for one image.
struct LayerCounts {
  std::string name;  // layer name, or "add"/"avgpool"
  graph::OpKind kind;
  model::LayerRole role;
  OpCounts counts;
  graph::OpWidths widths;  // the accumulator and multiplier widths these operations run at
};

}  // namespace prom::infer
