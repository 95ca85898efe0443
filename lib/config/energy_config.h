// Energy per operation for the energy report (lib/energy), which gives two conventions side by side:
// honest (every operation the integer model executes, at the width it executes it) and paper_like.
// Default: Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, in picojoules.
#pragma once
#include <string>

#include "config/schema.h"

namespace prom::config {

struct EnergyConfig {
  double int8_add = 0.03, int8_mult = 0.2;
  double int16_add = 0.05;  // not in Horowitz's table: linear in width between his 8- and 32-bit adds
  double int32_add = 0.1, int32_mult = 3.1;
  double fp16_add = 0.4, fp16_mult = 1.1;
  double fp32_add = 0.9, fp32_mult = 3.7;
  // One 8-bit read of an activation table (256 entries): not in Horowitz's table; charged as the
  // per-byte share of his 8 KB SRAM read (10 pJ per 64 bits), an upper bound for a 256-byte table.
  double table_lookup = 1.25;
  // Switches of the single-convention report, still read (and checked) so that configs and the
  // configs embedded in checkpoints written before both conventions were reported still load; they
  // change nothing: the report always gives the honest and the paper-like count side by side.
  std::string ternary_accumulator = "int8", mac_accumulator = "int32";
  bool count_requant = true;
  template <class V> void visit(V& v) {
    v.field("int8_add", int8_add, at_least(0));
    v.field("int8_mult", int8_mult, at_least(0));
    v.field("int16_add", int16_add, at_least(0));
    v.field("int32_add", int32_add, at_least(0));
    v.field("int32_mult", int32_mult, at_least(0));
    v.field("fp16_add", fp16_add, at_least(0));
    v.field("fp16_mult", fp16_mult, at_least(0));
    v.field("fp32_add", fp32_add, at_least(0));
    v.field("fp32_mult", fp32_mult, at_least(0));
    v.field("table_lookup", table_lookup, at_least(0));
    v.field("ternary_accumulator", ternary_accumulator, one_of({"int8", "int32"}));
    v.field("mac_accumulator", mac_accumulator, one_of({"int8", "int32"}));
    v.field("count_requant", count_requant);
  }
};

}  // namespace prom::config
