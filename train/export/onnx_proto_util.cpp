#include "train/export/onnx_proto_util.hpp"

#include <onnx/defs/schema.h>

#include <cstring>
#include <filesystem>
#include <limits>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"

namespace arcforge::onnx_io {

int newest_known_opset() {
  const auto& ranges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  auto it = ranges.find(onnx::ONNX_DOMAIN);
  return it == ranges.end() ? 13 : it->second.second;
}

int64_t ir_version_for_opset(int opset) { return opset <= 14 ? 7 : 8; }

onnx::TensorProto float_tensor(const std::string& name, const torch::Tensor& values,
                               const std::vector<int64_t>& dims) {
  const torch::Tensor t = values.detach().to(torch::kCPU, torch::kFloat).contiguous();
  onnx::TensorProto proto;
  proto.set_name(name);
  proto.set_data_type(onnx::TensorProto::FLOAT);
  if (dims.empty()) {
    for (int64_t d : t.sizes()) proto.add_dims(d);
  } else {
    int64_t count = 1;
    for (int64_t d : dims) {
      proto.add_dims(d);
      count *= d;
    }
    if (count != t.numel()) {
      throw Error("initializer '" + name + "': " + std::to_string(t.numel()) + " values for " +
                  std::to_string(count) + " elements");
    }
  }
  // raw_data is little-endian, which is this machine's order (x86-64, aarch64).
  proto.set_raw_data(std::string(static_cast<const char*>(t.data_ptr()), t.numel() * sizeof(float)));
  return proto;
}

onnx::TensorProto int64_tensor(const std::string& name, const std::vector<int64_t>& values) {
  onnx::TensorProto proto;
  proto.set_name(name);
  proto.set_data_type(onnx::TensorProto::INT64);
  proto.add_dims(static_cast<int64_t>(values.size()));
  for (int64_t v : values) proto.add_int64_data(v);
  return proto;
}

void set_attribute(onnx::NodeProto& node, const std::string& name, int64_t value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

void set_attribute(onnx::NodeProto& node, const std::string& name, float value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

void set_attribute(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}

void declare_tensor(onnx::ValueInfoProto* value, const std::string& name, const std::vector<int64_t>& dims,
                    const std::string& dynamic_name) {
  value->set_name(name);
  auto* type = value->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = type->mutable_shape();
  for (int64_t d : dims) {
    auto* dim = shape->add_dim();
    if (d < 0) {
      dim->set_dim_param(dynamic_name);
    } else {
      dim->set_dim_value(d);
    }
  }
}

onnx::ModelProto parse_model(const std::string& bytes, const std::string& path_for_errors) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw InputError(file_message(path_for_errors, "larger than 2 GiB; protobuf cannot parse it"));
  }
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) {
    throw InputError(file_message(path_for_errors, "not an ONNX model (protobuf parsing failed)"));
  }
  if (!model.has_graph() || model.graph().node_size() == 0) {
    throw InputError(file_message(path_for_errors, "ONNX model has no graph nodes"));
  }
  return model;
}

onnx::ModelProto read_model(const std::string& path, std::size_t max_bytes) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw InputError(file_message(path, "cannot read (" + ec.message() + ")"));
  if (size > max_bytes) {
    throw InputError(file_message(path, std::to_string(size) + " bytes is more than the " +
                                            std::to_string(max_bytes) + "-byte limit"));
  }
  return parse_model(read_file(path), path);
}

}  // namespace arcforge::onnx_io
