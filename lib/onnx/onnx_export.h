// The integer model (graph::IntModel, from lowering or a .prom file) as a QDQ ONNX model: ONNX
// Runtime, TensorRT, OpenVINO and NPU compilers read QuantizeLinear/DequantizeLinear pairs around
// float operators as "this runs in int8". Written with Debian's libonnx-dev, checked with
// onnx::checker and strict shape inference. Built only where libonnx is found (PROM_WITH_ONNX).
//
// How prom's integers map to QDQ (the README section "ONNX" says where ONNX Runtime can differ):
// - every activation: QuantizeLinear/DequantizeLinear with its scale, zero point 0, uint8 or int8;
// - conv/linear weights: the int8 codes ({-1, 0, +1} for ternary layers, marked in doc strings and
//   the metadata), DequantizeLinear per output channel with the scale that makes float conv of the
//   dequantized values equal prom's fixed-point requantization: s_w[c] = M[c] * 2^acc_shift * s_out / s_in
//   (M = multiplier / 2^right_shift), so conv / s_out = (acc + bias / 2^acc_shift) * 2^acc_shift * M;
// - biases (BiasFormat): float32 by default, prom's bias with its fractional bits (bias * 2^-acc_shift
//   accumulator steps), as TensorRT's QDQ guidance has it; or int32 codes round_half_even(bias /
//   2^acc_shift) at scale s_in * s_w[c], the form ONNX Runtime fuses into integer convolutions
//   (QLinearConv), which drops the fractional bits: on ternary layers one accumulator step is 0.1-1
//   output steps, so that moves outputs by up to half a step (measured in test_onnx.cpp, README);
// - a ReLU6 folded into the clamp: Clip at the clamp codes times s_out, emitted only where the clamp
//   is narrower than the output type's range;
// - residual add: Add of the two dequantized inputs; average pooling: GlobalAveragePool; classifier:
//   Gemm with float logits out (the graph output "logits", [N, classes]).
#pragma once
#include <cstdint>
#include <string>

#include "graph/int_model.h"

namespace prom::onnx_export {

// Opset 13: per-channel QuantizeLinear/DequantizeLinear; IR version 7 (ONNX 1.8): read by ONNX
// Runtime >= 1.6, TensorRT >= 8 and OpenVINO.
constexpr int64_t kOpsetVersion = 13;
constexpr int64_t kIrVersion = 7;
// The graph's input (normalised images, float32 [N, C, H, W]) and output (float32 logits [N, classes]).
constexpr const char* kInputName = "input";
constexpr const char* kOutputName = "logits";

enum class BiasFormat { kFloat, kInt32 };

struct OnnxExportOptions {
  BiasFormat bias = BiasFormat::kFloat;
};

struct OnnxSummary {
  size_t bytes = 0;
  int nodes = 0, initializers = 0;
  int ternary_layers = 0, int8_layers = 0;
};

// The serialized ONNX model of `model`, checked (onnx::checker::check_model, then shape inference
// in strict mode with type checks). Throws prom::Error "cannot export to ONNX: ..." naming the
// layer or activation that ONNX cannot carry (a scale outside float32, a classifier that is not
// the graph's output).
std::string encode_onnx_model(const graph::IntModel& model, const OnnxExportOptions& options = {},
                              OnnxSummary* summary = nullptr);

// Writes encoded bytes to `path` atomically (a failed write leaves nothing partial), then reads the
// file back and checks it again; a file that does not read back identically is removed.
void write_onnx_file(const std::string& bytes, const std::string& path);

}  // namespace prom::onnx_export
