#pragma once
// check_onnx_file() on a model in memory (internal: protobuf types).
#include <onnx/onnx_pb.h>

#include <string>

namespace arcforge::onnx_io {

// Runs the checker and strict shape inference; the model gains inferred value_info.
void check_onnx_model(onnx::ModelProto& model, const std::string& name);

}  // namespace arcforge::onnx_io
