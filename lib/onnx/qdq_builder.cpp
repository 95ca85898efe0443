#include "onnx/qdq_builder.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "core/error.h"

namespace prom::onnx_export {

using ::onnx::TensorProto_DataType;

float float32_scale(double value, const std::string& what) {
  const float f = static_cast<float>(value);
  if (!(f > 0) || !std::isnormal(f)) {
    std::ostringstream msg;
    msg << "cannot export to ONNX: " << what << ": scale " << value
        << " is not a positive normal float32 (ONNX quantization scales are float32)";
    throw Error(msg.str());
  }
  return f;
}

::onnx::TensorProto* GraphBuilder::initializer(const std::string& name, TensorProto_DataType type,
                                               const std::vector<int64_t>& dims, const void* data, size_t bytes) {
  ::onnx::TensorProto* t = graph_->add_initializer();
  t->set_name(name);
  t->set_data_type(type);
  for (int64_t d : dims) t->add_dims(d);
  // raw_data is little-endian; so is every platform prom builds on (x86-64, aarch64).
  t->set_raw_data(std::string(static_cast<const char*>(data), bytes));
  return t;
}

std::string GraphBuilder::int8_tensor(const std::string& name, const torch::Tensor& codes) {
  torch::Tensor c = codes.to(torch::kInt8).contiguous();
  std::vector<int64_t> dims(c.sizes().begin(), c.sizes().end());
  initializer(name, ::onnx::TensorProto_DataType_INT8, dims, c.data_ptr<int8_t>(), static_cast<size_t>(c.numel()));
  return name;
}

std::string GraphBuilder::int32_tensor(const std::string& name, const std::vector<int32_t>& values) {
  initializer(name, ::onnx::TensorProto_DataType_INT32, {static_cast<int64_t>(values.size())}, values.data(),
              values.size() * sizeof(int32_t));
  return name;
}

std::string GraphBuilder::float_tensor(const std::string& name, const std::vector<float>& values) {
  initializer(name, ::onnx::TensorProto_DataType_FLOAT, {static_cast<int64_t>(values.size())}, values.data(),
              values.size() * sizeof(float));
  return name;
}

std::string GraphBuilder::float_scalar(const std::string& name, float value) {
  initializer(name, ::onnx::TensorProto_DataType_FLOAT, {}, &value, sizeof(float));
  return name;
}

std::string GraphBuilder::zero_point(const std::string& name, TensorProto_DataType type, int64_t count) {
  const size_t n = count < 0 ? 1 : static_cast<size_t>(count);
  const size_t width = type == ::onnx::TensorProto_DataType_INT32 ? 4 : 1;
  std::vector<char> zeros(n * width, 0);
  std::vector<int64_t> dims;
  if (count >= 0) dims.push_back(count);
  initializer(name, type, dims, zeros.data(), zeros.size());
  return name;
}

::onnx::NodeProto* GraphBuilder::node(const std::string& op_type, const std::string& name,
                                      const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
                                      const std::string& doc) {
  ::onnx::NodeProto* n = graph_->add_node();
  n->set_op_type(op_type);
  n->set_name(name);
  for (const auto& i : inputs) n->add_input(i);
  for (const auto& o : outputs) n->add_output(o);
  if (!doc.empty()) n->set_doc_string(doc);
  return n;
}

void GraphBuilder::attribute(::onnx::NodeProto* node, const std::string& name, int64_t value) {
  ::onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto_AttributeType_INT);
  a->set_i(value);
}

void GraphBuilder::attribute(::onnx::NodeProto* node, const std::string& name, const std::vector<int64_t>& values) {
  ::onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto_AttributeType_INTS);
  for (int64_t v : values) a->add_ints(v);
}

namespace {
void describe(::onnx::ValueInfoProto* v, const std::string& name, TensorProto_DataType type,
              const std::vector<int64_t>& dims_after_batch) {
  v->set_name(name);
  ::onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(type);
  ::onnx::TensorShapeProto* shape = t->mutable_shape();
  shape->add_dim()->set_dim_param("N");
  for (int64_t d : dims_after_batch) shape->add_dim()->set_dim_value(d);
}
}  // namespace

void GraphBuilder::input(const std::string& name, TensorProto_DataType type, const std::vector<int64_t>& dims) {
  describe(graph_->add_input(), name, type, dims);
}

void GraphBuilder::output(const std::string& name, TensorProto_DataType type, const std::vector<int64_t>& dims) {
  describe(graph_->add_output(), name, type, dims);
}

}  // namespace prom::onnx_export
