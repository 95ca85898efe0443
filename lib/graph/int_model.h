// The exported integer model: what prom ships to hardware. One safetensors file holds the integer
// weights (ternary packed 2 bits each, or base-3 at 5 per byte), int32 biases with BatchNorm folded
// in, fixed-point requantization multipliers, activation scales, and in its metadata the graph,
// class list, preprocessing and prom version. docs/model-format.md documents the layout.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/layer.h"

namespace prom::graph {

// v2: one rounding rule (ties to even) with a single rounding per requantization, explicit output
// clamps, classifier biases with fractional bits. v3 adds activation tables after convolutions and
// squeeze-and-excitation scaling (op kind "mul"); a model using neither is written as v2, so that
// older readers keep reading it and refuse what they cannot compute. v1 files are refused with a
// message naming the versions read.
constexpr const char* kFormatName = "prom-int-v2";
constexpr const char* kFormatNameV3 = "prom-int-v3";

enum class OpKind { kConv, kAdd, kAvgPool, kLinear, kMul };
const char* op_kind_name(OpKind kind);

// One activation tensor of the graph: int8 (signed) or uint8 (unsigned), zero point 0.
struct Activation {
  double scale = 1.0;  // real value of one integer step
  bool is_unsigned = false;
  int64_t channels = 0, height = 1, width = 1;
};

struct IntOp {
  OpKind kind = OpKind::kConv;
  std::string name;  // the float model's layer name ("features.2.conv.0.0"), "" for add/pool
  model::LayerRole role = model::LayerRole::kStem;
  int input = -1, input2 = -1, output = -1;  // activation indices
  // conv / linear
  int64_t in_channels = 0, out_channels = 0, kernel = 1, stride = 1, padding = 0, groups = 1;
  bool ternary = false;
  bool relu6 = false;          // a ReLU6 is folded into the clamp below
  torch::Tensor weight;        // int8 codes [out, in/groups, k, k] ({-1, 0, 1} when ternary); linear: [out, in]
  torch::Tensor bias;          // int32 [out], in units of 2^-acc_shift accumulator steps, BatchNorm folded in
  int64_t acc_shift = 0;       // fractional bias bits: the layer computes acc * 2^acc_shift + bias in int32
  // conv: out = clamp(round((acc * 2^acc_shift + bias) * multiplier / 2^right_shift), clamp_lo, clamp_hi)
  // (quant/arithmetic.h: requantize)
  torch::Tensor multiplier;    // int32 [out], in [2^30, 2^31) or 0
  torch::Tensor right_shift;   // int32 [out], in [1, 62] where the multiplier is not 0
  int32_t clamp_lo = 0, clamp_hi = 0;
  torch::Tensor weight_scale;  // float32 [out]: real value of one weight step (with BN folded), for reference
  torch::Tensor output_scale;  // linear only: float32 [out], real value of one step of acc * 2^acc_shift + bias
  // conv (v3): an activation computed by a table on the requantized (pre-activation) codes:
  // out = table[code + 128]; none where the activation is a clamp (ReLU, ReLU6) or absent.
  model::Activation activation = model::Activation::kNone;
  torch::Tensor table;  // int32 [256], codes on the output grid
  // add: out = round((a * mult_a + b * mult_b) / 2^add_shift), in int64
  int64_t add_mult_a = 0, add_mult_b = 0, add_shift = 0;
  // mul (v3): features `input` [C, H, W] scaled by the gate `input2` [C, 1, 1]:
  // out = clamp(round(x * g * mul_multiplier / 2^mul_shift)) on the output grid (arith::mul_requantize)
  int64_t mul_multiplier = 0, mul_shift = 0;
};


struct Preprocess {
  int64_t resize = 0, crop = 0;  // eval preset
  std::vector<double> mean, std;
};

struct IntModel {
  std::string arch;
  std::string prom_version;
  std::vector<std::string> classes;
  int64_t input_size = 0;
  Preprocess preprocess;
  std::string ternary_packing = "2bit";  // 2bit | base3
  std::vector<Activation> activations;
  std::vector<IntOp> ops;
  int input = 0, output = -1;  // activation indices; the output is the linear op's int32 logits
};

// True where the model needs prom-int-v3 (an activation table or a mul op).
bool needs_v3(const IntModel& model);

// Packing of ternary codes. 2bit: weight i in bits 2*(i%4) of byte i/4, 00 = 0, 01 = +1, 10 = -1.
// base3: byte j holds weights 5j..5j+4 as sum (w+1) * 3^k. Both pad the last byte with zeros.
std::vector<uint8_t> pack_ternary(const torch::Tensor& codes, const std::string& packing);
torch::Tensor unpack_ternary(const uint8_t* data, size_t bytes, int64_t count, const std::string& packing,
                             const std::string& origin);

void save_int_model(const IntModel& model, const std::string& path);
std::string encode_int_model(const IntModel& model);
// Validates everything (shapes, ranges, graph indices); a bad file is a prom::Error naming it.
IntModel load_int_model(const std::string& path);
// The same from the file's bytes; `origin` names the source in error messages (the fuzz target's entry).
IntModel decode_int_model(const std::string& bytes, const std::string& origin);

}  // namespace prom::graph
