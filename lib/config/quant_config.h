// The quantization policy: rules map layer roles and/or name globs to a weight quantizer and an
// input-activation quantizer. The first matching rule wins; a layer no rule matches stays float.
#pragma once
#include <string>
#include <vector>

#include "config/schema.h"

namespace prom::config {

// Non-zero ternary weights of one sign per output channel under accumulator: int16.
constexpr int64_t kInt16TernaryPerSign = 128;

struct WeightQuantConfig {
  std::string type = "none";                // none | ternary | int8
  std::string method = "absmean";           // ternary: absmean (BitNet b1.58) | twn (0.7 mean|W| threshold)
  std::string granularity = "per_channel";  // per_channel (one scale per output channel) | per_tensor
  bool learned = false;                     // int8: learned scale (LSQ) instead of max|W|/127
  // int8: how the per-channel scale is chosen. max: max|W| / 127. fit_multiplier: the smallest scale
  // >= max|W| / 127 whose requantization multiplier already has quant.requant's significant bits (a
  // power of two for power_of_two), so that shortening the multiplier changes nothing: the mantissa
  // the multiplier loses moves into the weight codes (max |code| 64-127 instead of 127), and the
  // layer's output keeps its exact gain instead of one off by up to a third.
  std::string scale = "max";
  // ternary: the accumulator the layer's sums must provably fit. int32: no constraint. int16: at
  // most kInt16TernaryPerSign (128) non-zero weights of each sign per output channel (the largest
  // |W| kept), so that every partial sum of codes times int8 or uint8 inputs fits int16 (128 * 255
  // = 32640): the energy report then charges 16-bit additions (accumulator-aware quantization, as
  // A2Q, Colbert et al. 2023, does for int8 weights).
  std::string accumulator = "int32";
  // ternary twn: the zero threshold delta = threshold * mean|W| (TWN's 0.7). Larger: more zero weights,
  // fewer additions (quant/quantizers.h); the energy report counts only the non-zero ones.
  double threshold = 0.7;
  template <class V> void visit(V& v) {
    v.field("type", type, one_of({"none", "ternary", "int8"}));
    v.field("method", method, one_of({"absmean", "twn"}));
    v.field("threshold", threshold, between(0.0, 4.0));
    v.field("granularity", granularity, one_of({"per_channel", "per_tensor"}));
    v.field("learned", learned);
    v.field("scale", scale, one_of({"max", "fit_multiplier"}));
    v.field("accumulator", accumulator, one_of({"int32", "int16"}));
  }
};

struct ActQuantConfig {
  std::string type = "none";  // none | int8 (unsigned after ReLU6, signed elsewhere; per tensor)
  bool learned = false;       // learned step (LSQ) instead of the EMA range observer
  template <class V> void visit(V& v) {
    v.field("type", type, one_of({"none", "int8"}));
    v.field("learned", learned);
  }
};

struct QuantRule {
  std::vector<std::string> roles;  // model::LayerRole names (lib/model/layer.h)
  std::vector<std::string> names;  // layer-name globs, e.g. "features.1*" (fnmatch)
  WeightQuantConfig weight;
  ActQuantConfig input;
  template <class V> void visit(V& v) {
    v.field("roles", roles,
            one_of({"stem", "depthwise", "pointwise_expand", "pointwise_project", "last_conv", "classifier", "se_reduce",
                    "se_expand", "classifier_hidden"}));
    v.field("names", names);
    v.section("weight", weight);
    v.section("input", input);
  }
};

struct QuantConfig {
  bool enabled = false;
  std::vector<QuantRule> rules;
  double observer_momentum = 0.01;  // EMA weight of each new batch's range (torch.ao's averaging constant)
  int freeze_bn_after = -1;         // epochs after which BN uses running statistics (-1: never)
  int freeze_observers_after = -1;  // epochs after which activation ranges stop moving (-1: never)
  // How a fully quantized model computes in eval mode: `exact` executes its integer graph (bit for bit
  // what the exported model computes); `simulated` runs the float modules with fake quantizers.
  std::string eval_forward = "exact";
  // Training: `exact_when_frozen` gives the loss the exact logits (gradients of the simulated forward,
  // straight through) once BatchNorm and observers are frozen; `simulated` never does.
  std::string train_forward = "exact_when_frozen";
  // A ReLU6 read only by an unsigned observer quantizer runs inside that quantizer's fake-quant pass
  // (same values and gradients, bit for bit; fewer passes over memory). false: separate ops.
  bool fuse_relu6 = true;
  // Requantization multipliers: fixed_point32 (int32 mantissa: one 32-bit multiply per output value),
  // short (`requant_bits` significant bits: a narrow multiply), power_of_two (1 bit: a rounding shift,
  // no multiply). Applied when the integers are computed (exact forward and export alike), so the
  // exported model still computes bit for bit what eval computes; the frozen epochs train on it.
  std::string requant = "fixed_point32";
  int requant_bits = 8;
  template <class V> void visit(V& v) {
    v.field("enabled", enabled);
    v.list("rules", rules);
    v.field("observer_momentum", observer_momentum, between(0, 1));
    v.field("freeze_bn_after", freeze_bn_after, at_least(-1));
    v.field("freeze_observers_after", freeze_observers_after, at_least(-1));
    v.field("eval_forward", eval_forward, one_of({"exact", "simulated"}));
    v.field("train_forward", train_forward, one_of({"exact_when_frozen", "simulated"}));
    v.field("fuse_relu6", fuse_relu6);
    v.field("requant", requant, one_of({"fixed_point32", "short", "power_of_two"}));
    v.field("requant_bits", requant_bits, between(2, 16));
  }
};

}  // namespace prom::config
