#pragma once
// libonnx's reference checks on a written model: the checker (graph well-formed, every node valid
// for its opset) and strict shape inference (the declared output shape agrees with what the
// operators produce). Throws InputError naming the file and the checker's message.
#include <string>

namespace arcforge::onnx_io {

void check_onnx_file(const std::string& path);

}  // namespace arcforge::onnx_io
