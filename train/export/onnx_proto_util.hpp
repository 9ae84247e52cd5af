#pragma once
// Small helpers around libonnx's protobuf classes, shared by the writer, the reader and the checker.
// Internal to train/export: public headers keep protobuf out so that their users need no libonnx.
#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace arcforge::onnx_io {

// The newest default-domain opset this libonnx knows (its checker rejects newer ones).
int newest_known_opset();

// IR version that goes with an opset (ONNX's versioning table: opset 13-14 -> IR 7, 15-18 -> IR 8).
int64_t ir_version_for_opset(int opset);

// A float32 initializer holding `values` (any dtype/device; converted), with `dims` (default: the
// tensor's own shape).
onnx::TensorProto float_tensor(const std::string& name, const torch::Tensor& values,
                               const std::vector<int64_t>& dims = {});

// A 1-D int64 initializer (Reshape's shape, ...).
onnx::TensorProto int64_tensor(const std::string& name, const std::vector<int64_t>& values);

void set_attribute(onnx::NodeProto& node, const std::string& name, int64_t value);
void set_attribute(onnx::NodeProto& node, const std::string& name, float value);
void set_attribute(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values);

// A tensor value declaration; a dimension < 0 becomes the symbolic `dynamic_name`.
void declare_tensor(onnx::ValueInfoProto* value, const std::string& name, const std::vector<int64_t>& dims,
                    const std::string& dynamic_name);

// Parses a serialised model; throws InputError naming `path_for_errors` when it is not one.
onnx::ModelProto parse_model(const std::string& bytes, const std::string& path_for_errors);

// Reads a whole .onnx file (size capped) and parses it.
onnx::ModelProto read_model(const std::string& path, std::size_t max_bytes);

}  // namespace arcforge::onnx_io
