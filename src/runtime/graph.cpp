// Small helpers of the runtime IR, and the list of operators the runtime covers.
#include <set>

#include "arcforge/common/error.hpp"
#include "graph.hpp"

namespace arcforge::runtime::detail {

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

HostTensor HostTensor::from_i64(std::vector<int64_t> dims, std::vector<int64_t> values) {
  HostTensor t;
  t.dtype = DType::i64;
  t.dims = std::move(dims);
  t.i = std::move(values);
  return t;
}

HostTensor HostTensor::from_f32(std::vector<int64_t> dims, std::vector<float> values) {
  HostTensor t;
  t.dtype = DType::f32;
  t.dims = std::move(dims);
  t.f = std::move(values);
  return t;
}

std::vector<std::string> Node::values_read() const {
  std::vector<std::string> out;
  for (const auto& in : inputs) {
    if (!in.empty()) out.push_back(in);
  }
  for (const auto& p : post_ops) {
    if (!p.operand.empty()) out.push_back(p.operand);
  }
  return out;
}

int64_t Node::attr_i(const std::string& key, int64_t fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (it->second.kind != Attribute::Kind::i) throw InputError(describe() + ": attribute '" + key + "' must be an int");
  return it->second.i;
}

float Node::attr_f(const std::string& key, float fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (it->second.kind == Attribute::Kind::i) return static_cast<float>(it->second.i);
  if (it->second.kind != Attribute::Kind::f) throw InputError(describe() + ": attribute '" + key + "' must be a float");
  return it->second.f;
}

std::string Node::attr_s(const std::string& key, const std::string& fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (it->second.kind != Attribute::Kind::s) throw InputError(describe() + ": attribute '" + key + "' must be a string");
  return it->second.s;
}

std::vector<int64_t> Node::attr_ints(const std::string& key, std::vector<int64_t> fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (it->second.kind == Attribute::Kind::i) return {it->second.i};
  if (it->second.kind != Attribute::Kind::ints) throw InputError(describe() + ": attribute '" + key + "' must be ints");
  return it->second.ints;
}

std::string Graph::error(const Node& node, const std::string& what) const {
  return file_message(path, node.describe() + ": " + what);
}

bool is_supported_op(const std::string& op) {
  static const std::set<std::string> ops = {
      // computed with oneDNN primitives
      "Conv", "Gemm", "MatMul", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
      "GlobalMaxPool", "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Exp", "Sqrt", "Abs",
      "Neg", "HardSwish", "Elu", "Add", "Sub", "Mul", "Div", "Max", "Min", "Softmax", "Concat",
      "Transpose", "Slice", "Split", "LayerNormalization", "ReduceMean", "Pow",
      // computed with loops (cheap, memory-bound); a zero Pad before a Conv is folded into it
      "Resize", "Upsample", "Pad",
      // views: no data movement
      "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout",
      // shape arithmetic, evaluated at plan time
      "Constant", "Shape", "Gather", "Cast", "ConstantOfShape",
      // quantization (QDQ models): reorders with scales, or fused into int8 convolutions
      "QuantizeLinear", "DequantizeLinear"};
  return ops.count(op) != 0;
}

}  // namespace arcforge::runtime::detail
