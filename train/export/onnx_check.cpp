#include "train/export/onnx_check.hpp"

#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include "arcforge/common/error.hpp"
#include "train/export/onnx_check_model.hpp"
#include "train/export/onnx_proto_util.hpp"

namespace arcforge::onnx_io {

void check_onnx_model(onnx::ModelProto& model, const std::string& name) {
  try {
    onnx::checker::check_model(model);
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict=*/1));
  } catch (const std::exception& e) {
    throw InputError(file_message(name, std::string("fails the ONNX checker: ") + e.what()));
  }
}

void check_onnx_file(const std::string& path) {
  onnx::ModelProto model = read_model(path, std::size_t{2} << 30);
  check_onnx_model(model, path);
}

}  // namespace arcforge::onnx_io
