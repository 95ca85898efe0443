// Energy per operation and the counting conventions of the energy report (lib/energy).
// Default: Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, in picojoules.
#pragma once
#include <string>

#include "config/schema.h"

namespace prom::config {

struct EnergyConfig {
  double int8_add = 0.03, int8_mult = 0.2;
  double int32_add = 0.1, int32_mult = 3.1;
  double fp16_add = 0.4, fp16_mult = 1.1;
  double fp32_add = 0.9, fp32_mult = 3.7;
  // What a ternary addition costs: int8 (the paper's "int8 additions") or int32 (a 32-bit accumulator).
  std::string ternary_accumulator = "int8";
  // What the add of an int8 multiply-accumulate costs: int32 (the accumulator's width) or int8.
  std::string mac_accumulator = "int32";
  // Charge requantization (and residual/pool rescaling) as int32 multiplies.
  bool count_requant = true;
  template <class V> void visit(V& v) {
    v.field("int8_add", int8_add, at_least(0));
    v.field("int8_mult", int8_mult, at_least(0));
    v.field("int32_add", int32_add, at_least(0));
    v.field("int32_mult", int32_mult, at_least(0));
    v.field("fp16_add", fp16_add, at_least(0));
    v.field("fp16_mult", fp16_mult, at_least(0));
    v.field("fp32_add", fp32_add, at_least(0));
    v.field("fp32_mult", fp32_mult, at_least(0));
    v.field("ternary_accumulator", ternary_accumulator, one_of({"int8", "int32"}));
    v.field("mac_accumulator", mac_accumulator, one_of({"int8", "int32"}));
    v.field("count_requant", count_requant);
  }
};

}  // namespace prom::config
