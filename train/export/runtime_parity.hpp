#pragma once
// The same seeded batch through libtorch (the backbone in eval mode) and through arcforge's runtime
// (the ONNX file): how far apart the embeddings are. `arcforge export` and `arcforge import` run
// it on every file they write or read, so a wrong export or import never goes unnoticed.
#include <cstdint>
#include <string>

#include "train/nn/backbone.hpp"

namespace arcforge::onnx_io {

struct ParityResult {
  int64_t batch = 0;
  double max_abs_diff = 0;  // max |runtime - libtorch|
  double output_scale = 0;  // max |libtorch|
  double relative() const { return output_scale > 0 ? max_abs_diff / output_scale : max_abs_diff; }
};

// The parity bar: max abs difference below 1e-4 of the output scale.
constexpr double kParityTolerance = 1e-4;

// batch 0 = the file's fixed batch, or 2 when its batch axis is dynamic. Inputs are uniform in
// [-1, 1) (normalised pixels) from `seed`. threads 0 = libtorch's current setting.
ParityResult compare_with_runtime(nn::Backbone& backbone, const std::string& onnx_path, int64_t batch = 0,
                                  uint64_t seed = 0, int threads = 0);

}  // namespace arcforge::onnx_io
