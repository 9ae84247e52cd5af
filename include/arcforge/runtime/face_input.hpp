#pragma once
// Aligned face crops as recogniser input: loading them from a folder, a .rec or an InsightFace .bin
// (for calibration and accuracy checks), and turning them into an NCHW float tensor.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "arcforge/image/image.hpp"
#include "arcforge/runtime/model.hpp"

namespace arcforge::runtime {

// y = (pixel - mean[c]) / std[c], channels in RGB order, or BGR when `bgr` (mean/std then follow the
// model's channel order too).
struct Preprocess {
  std::array<float, 3> mean{127.5f, 127.5f, 127.5f};
  std::array<float, 3> std{127.5f, 127.5f, 127.5f};
  bool bgr = false;
};

// [N, 3, H, W] from N images of the same size (3 channels; gray is repeated).
Tensor faces_to_tensor(const std::vector<image::Image>& faces, const Preprocess& p);

struct FaceSource {
  std::vector<image::Image> faces;
  int64_t skipped = 0;  // smaller than the wanted size (or undecodable in a folder)
};

// Up to `limit` faces (0: all) from `source`: a folder of images (sorted by name), a .rec (with its
// .idx) or an InsightFace .bin. Larger images are center-cropped to height x width, smaller ones
// skipped. Throws InputError naming the source when it cannot be read or yields no face.
FaceSource load_faces(const std::string& source, int height, int width, int64_t limit = 0);

}  // namespace arcforge::runtime
