#pragma once
// One `synth` image as a list of flat-coloured layers whose coverage is separable, built on the
// CPU from the parameters. Separable means each factor of a layer's coverage combines a profile
// along x (row) and profiles along y (col), so the device evaluates a layer over the SxS canvas
// with one or two broadcast ops instead of per-pixel geometry:
//   Factor::shape: clamp(col_a[y] - col_b[y] * row[x], 0, 1)  row = |x - centre|: a blob given by
//                  its half-width at each height (ellipses, face outline, rectangles)
//   Factor::band:  clamp(row[x] + col_a[y], 0, 1)             one side of a curve y = f(x), or a
//                                                               soft background pattern
// A layer's coverage is the product of its factors (a complemented factor counts as 1 - value);
// a layer without factors covers everything. Pose rotation is not separable: it is applied
// afterwards by resampling the canvas on the grid gx, gy.
#include <cstdint>
#include <vector>

#include "train/data/synth_params.hpp"

namespace arcforge::data::synth {

struct Factor {
  enum class Kind { shape, band };
  Kind kind = Kind::band;
  bool complement = false;
  std::vector<float> row, col_a, col_b;  // image_size values each; col_b only for shapes
  // Pixel rows [y0, y1) and columns [x0, x1) outside which the factor is exactly zero (found
  // with a margin: too large a window only costs time, too small would change the image).
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
};

struct Layer {
  const char* name = "";
  Rgb color{};
  double opacity = 0;  // 0: absent in this sample (the layer list is the same for every sample)
  std::vector<Factor> factors;
};

struct Scene {
  std::vector<Layer> layers;  // front to back; the last one is the background and has no factors
  // Lighting on the canvas: shade = ambient + diffuse * clamp(light_row[x] + light_col[y] +
  // sqrt(max(depth_row[x] + depth_col[y], depth_floor)), 0, 1), a lit sphere around the head.
  std::vector<float> light_row, light_col, depth_row, depth_col;
  double depth_floor = 0, ambient = 0, diffuse = 0;
  // Where each output pixel samples the canvas (grid_sample convention, align_corners = false):
  // gx = gx_row[x] + gx_col[y], gy = gy_row[x] + gy_col[y].
  std::vector<float> gx_row, gx_col, gy_row, gy_col;
  double noise_sigma = 0;
  uint64_t noise_offset = 0;
};

Scene build_scene(const IdentityParams& identity, const SampleParams& sample, int64_t image_size);

}  // namespace arcforge::data::synth
