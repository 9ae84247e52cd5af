#pragma once
// The JSON sidecar that travels next to an exported model (model.onnx -> model.json): everything a
// deployment needs to feed the recognizer correctly. No libtorch or protobuf here, so the
// deployment side can read it too.
//
//   {"input_colour": "RGB", "mean": [127.5,127.5,127.5], "std": [127.5,127.5,127.5],
//    "layout": "NCHW", "input_size": [112,112], "embedding_size": 512,
//    "template": [[38.2946,51.6963], ...5 points, 112x112 pixels...],
//    "arch": "r50", "source": "runs/x/checkpoint.pt", "batch": "dynamic", "batch_norm": "kept",
//    "opset": 13, "onnx": "model.onnx"}
#include <array>
#include <cstdint>
#include <string>

namespace arcforge::onnx_io {

struct ModelSidecar {
  std::string input_colour = "RGB";
  std::array<double, 3> mean{127.5, 127.5, 127.5};  // per input channel, in input_colour order
  std::array<double, 3> std{127.5, 127.5, 127.5};
  std::string layout = "NCHW";
  std::array<int64_t, 2> input_size{112, 112};  // height, width
  int64_t embedding_size = 512;
  // The ArcFace 5-point alignment template (eyes, nose tip, mouth corners) in input pixels.
  std::array<std::array<double, 2>, 5> landmark_template{{{38.2946, 51.6963},
                                                          {73.5318, 51.5014},
                                                          {56.0252, 71.7366},
                                                          {41.5493, 92.3655},
                                                          {70.7299, 92.2041}}};
  std::string arch;
  std::string source;              // checkpoint path, or "random-init (seed N)"
  std::string batch = "dynamic";   // or the fixed batch size
  std::string batch_norm = "kept"; // or "folded"
  int opset = 13;
  std::string onnx;                // file name of the model, relative to the sidecar
};

// model.onnx -> model.json (same directory); any other name gets ".json" appended.
std::string sidecar_path_for(const std::string& onnx_path);

void write_sidecar(const std::string& path, const ModelSidecar& sidecar);

// Throws InputError naming the file for unreadable JSON, a missing key or a value of the wrong type.
ModelSidecar read_sidecar(const std::string& path);

}  // namespace arcforge::onnx_io
