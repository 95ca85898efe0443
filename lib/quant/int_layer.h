// From a quantized layer's float state (weight codes and scales, BatchNorm, activation scales) to the
// integers that compute it: folded int32 biases with fractional bits, fixed-point multipliers, the
// output clamp. The exact fake-quant forward and lowering both call `lower_layer`, so the model that
// QAT evaluates and the integer model that ships compute with the same integers.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "config/quant_config.h"
#include "model/layer.h"
#include "quant/quantizers.h"

namespace prom::quant {

// Which activation quantizer owns each tensor of the model's graph (nullptr: a float tensor, or the
// int32 logits). One quantizer per tensor: a tensor read twice (a residual block's input) is
// quantized once.
std::vector<ActivationQuantImpl*> tensor_quantizers(model::ClassifierModel& model);
// Per graph node: the quantizer of the pre-activation values where the node's activation is a table
// (activation_table.h), nullptr elsewhere.
std::vector<ActivationQuantImpl*> preactivation_quantizers(model::ClassifierModel& model);

struct IntLayer {
  std::string name;
  bool is_linear = false, ternary = false;
  torch::Tensor weight;       // int8 codes, the layer's weight shape; negated where the folded scale is
                              // negative, zero on constant channels
  torch::Tensor bias;         // int32 [out]: in units of 2^-acc_shift accumulator steps
  int64_t acc_shift = 0;      // fractional bits of the bias
  torch::Tensor table;        // int32 [256]: output code of each pre-activation code + 128, where the
                              // activation is a table (activation_table.h); undefined otherwise
  torch::Tensor multiplier;   // conv: int32 [out] (arith::FixedPointMultiplier)
  torch::Tensor right_shift;  // conv: int32 [out]
  int32_t clamp_lo = 0, clamp_hi = 0;  // conv: output codes (ReLU6 and the output grid)
  torch::Tensor weight_scale;  // float32 [out]: real value of one weight step with BN folded (reference)
  torch::Tensor output_scale;  // linear: float32 [out]: real value of one logit step (acc * 2^acc_shift + bias)
  int64_t max_abs_accumulator = 0;  // range analysis: the largest |sum(codes * inputs)| any input can give
  int64_t max_abs_biased = 0;       // ... and of acc * 2^acc_shift + bias: what the engine's int32 must hold
};

// BatchNorm folded per output channel: real output = scale[c] * conv(x, w)[c] + shift[c] (a linear
// layer: scale 1, shift its bias). The lowering and the QAT requantization gains read it.
struct FoldedAffine {
  std::vector<double> scale, shift;
};
FoldedAffine folded_affine(const model::LayerInfo& layer);

// |scale[c]| * s_in / s_out ([out] float64): a layer's requantization multiplier per unit of weight
// scale, which a weight.scale: fit_multiplier quantizer fits its scales to (Int8WeightImpl).
torch::Tensor multiplier_per_weight_step(const model::LayerInfo& layer, double s_in, double s_out);

// Significant bits kept in requantization multipliers (quant.requant): 31 for fixed_point32 (the
// full int32 mantissa), quant.requant_bits for short, 1 for power_of_two.
int requant_multiplier_bits(const config::QuantConfig& config);

// The quantizers and scales around one layer.
struct LayerQuantIO {
  double input_scale = 1;  // float32 value of the input step
  bool input_unsigned = false;
  double output_scale = 1;  // conv: the step of the tensor it writes
  bool output_unsigned = false;
  bool logits = false;  // the classifier: int32 logits, no requantization
  bool relu = false;   // a ReLU follows the layer: clamp at code 0
  bool relu6 = false;  // a ReLU6 follows: clamp at the codes of 0 and 6
  int multiplier_bits = 31;  // requant_multiplier_bits
};

// Throws prom::Error naming the layer when its weights or input are not quantized, or when a bias or
// multiplier does not fit the integer formats (an overflowing layer is refused, never wrapped).
IntLayer lower_layer(const model::LayerInfo& layer, const LayerQuantIO& io);

// The quantization around the layer that node `node` of the graph computes; `preactivation`: its entry
// of preactivation_quantizers (the layer then requantizes to that grid).
LayerQuantIO layer_io(const model::GraphNode& node, const std::vector<ActivationQuantImpl*>& quantizers,
                      const ActivationQuantImpl* preactivation, const std::string& layer_name, int multiplier_bits);

// lower_layer for graph node `node` (layer_io with its pre-activation quantizer), plus its activation
// table where it has one: what the exact forward executes and lowering exports.
IntLayer lower_node(const model::LayerInfo& layer, const model::GraphNode& node,
                    const std::vector<ActivationQuantImpl*>& quantizers, ActivationQuantImpl* preactivation,
                    int multiplier_bits);

}  // namespace prom::quant
