// Building blocks of a QDQ ONNX graph on libonnx's protobuf classes (Debian's libonnx-dev):
// initializers from prom's integer tensors and scales, nodes with attributes, and the check that a
// scale survives the trip to float32 (every ONNX quantization scale is a float32).
#pragma once
#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace prom::onnx_export {

// `value` as a positive normal float32, or prom::Error "cannot export to ONNX: <what> ...".
float float32_scale(double value, const std::string& what);

class GraphBuilder {
 public:
  explicit GraphBuilder(::onnx::GraphProto* graph) : graph_(graph) {}

  // Initializers (raw little-endian data); each returns its name.
  std::string int8_tensor(const std::string& name, const torch::Tensor& codes);  // shape of `codes`
  std::string int32_tensor(const std::string& name, const std::vector<int32_t>& values);  // [n]
  std::string float_tensor(const std::string& name, const std::vector<float>& values);    // [n]
  std::string float_scalar(const std::string& name, float value);
  // A zero point of shape [] (count < 0) or [count]: uint8 or int8 zeros, or int32 zeros.
  std::string zero_point(const std::string& name, ::onnx::TensorProto_DataType type, int64_t count = -1);

  ::onnx::NodeProto* node(const std::string& op_type, const std::string& name, const std::vector<std::string>& inputs,
                          const std::vector<std::string>& outputs, const std::string& doc = "");
  static void attribute(::onnx::NodeProto* node, const std::string& name, int64_t value);
  static void attribute(::onnx::NodeProto* node, const std::string& name, const std::vector<int64_t>& values);

  // A graph input or output: a float/int tensor with a symbolic batch dimension "N" first.
  void input(const std::string& name, ::onnx::TensorProto_DataType type, const std::vector<int64_t>& dims_after_batch);
  void output(const std::string& name, ::onnx::TensorProto_DataType type, const std::vector<int64_t>& dims_after_batch);

 private:
  ::onnx::TensorProto* initializer(const std::string& name, ::onnx::TensorProto_DataType type,
                                   const std::vector<int64_t>& dims, const void* data, size_t bytes);
  ::onnx::GraphProto* graph_;
};

}  // namespace prom::onnx_export
