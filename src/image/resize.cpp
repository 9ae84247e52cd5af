// Separable bilinear resize in OpenCV's 8-bit fixed point: per-column taps computed once, each
// destination row blends two source rows that were first resampled horizontally (and are reused
// while consecutive destination rows share them), so the cost is O(destination pixels) whatever
// the source size.
//
// Arithmetic, as cv::resize INTER_LINEAR does it for 8-bit images (OpenCV 4.x, resize.cpp):
// - positions in float: f = (float)((d + 0.5) * src / dst - 0.5), i = floor(f), weights
//   round((1 - frac) * 2048) and round(frac * 2048) (INTER_RESIZE_COEF_BITS = 11); outside the
//   image a column takes the edge pixel with weight 2048, a row keeps its weights on clamped rows;
// - horizontal: h = p0 * a0 + p1 * a1 (exact, scale 2^11);
// - vertical, as its SIMD kernel (VResizeLinearVec_32s8u) computes every full vector of a row:
//   v = ((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16), out = (v + 2) >> 2. OpenCV's scalar tail
//   (the last row_bytes % 16 values) rounds exactly instead, so there the two may differ by one.
#include "arcforge/image/resize.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

namespace arcforge::image {
namespace {

constexpr float kCoefficientScale = 2048;  // 1 << INTER_RESIZE_COEF_BITS

// The two source indices and fixed-point weights for one destination coordinate.
struct Tap {
  int i0 = 0, i1 = 0;
  int32_t w0 = 2048, w1 = 0;
};

// Columns and rows differ at the edges, as in cv::resize: a column outside the image moves onto the
// edge pixel with its whole weight, while a row keeps its fraction and both of its (clamped) source
// rows, which the vertical rounding then treats as two terms.
enum class Axis { columns, rows };

std::vector<Tap> taps(int source_size, int destination_size, Axis axis) {
  std::vector<Tap> out(static_cast<size_t>(destination_size));
  const double scale = 1.0 / (static_cast<double>(destination_size) / source_size);  // as cv::resize
  for (int d = 0; d < destination_size; ++d) {
    float position = static_cast<float>((d + 0.5) * scale - 0.5);
    int i = static_cast<int>(std::floor(position));
    float fraction = position - static_cast<float>(i);
    Tap& t = out[static_cast<size_t>(d)];
    if (axis == Axis::columns) {
      if (i < 0) i = 0, fraction = 0;
      if (i >= source_size - 1) i = source_size - 1, fraction = 0;
      t.i0 = i;
      t.i1 = std::min(i + 1, source_size - 1);
    } else {
      t.i0 = std::clamp(i, 0, source_size - 1);
      t.i1 = std::clamp(i + 1, 0, source_size - 1);
    }
    t.w0 = static_cast<int32_t>(std::nearbyint((1.0f - fraction) * kCoefficientScale));
    t.w1 = static_cast<int32_t>(std::nearbyint(fraction * kCoefficientScale));
  }
  return out;
}

// One source row resampled to the destination width, channels interleaved, scale 2^11.
void horizontal(const Image& src, int row, const std::vector<Tap>& columns, std::vector<int32_t>& out) {
  const int channels = src.channels;
  const uint8_t* line = src.pixels.data() + static_cast<size_t>(row) * src.row_bytes();
  int32_t* o = out.data();
  for (const Tap& t : columns) {
    const uint8_t* p0 = line + static_cast<size_t>(t.i0) * channels;
    const uint8_t* p1 = line + static_cast<size_t>(t.i1) * channels;
    for (int c = 0; c < channels; ++c) *o++ = p0[c] * t.w0 + p1[c] * t.w1;
  }
}

}  // namespace

Image resize_bilinear(const Image& src, int width, int height) {
  if (src.empty() || (src.channels != 1 && src.channels != 3)) {
    throw std::invalid_argument("resize_bilinear: empty source or unsupported channel count");
  }
  if (width <= 0 || height <= 0) throw std::invalid_argument("resize_bilinear: non-positive destination size");
  if (width == src.width && height == src.height) return src;  // cv::resize copies too
  Image dst(width, height, src.channels);
  const std::vector<Tap> columns = taps(src.width, width, Axis::columns);
  const std::vector<Tap> rows = taps(src.height, height, Axis::rows);
  const size_t row_values = dst.row_bytes();

  // Two cached horizontally-resampled source rows, keyed by their source row index.
  std::vector<int32_t> upper(row_values), lower(row_values);
  int upper_row = -1, lower_row = -1;
  for (int y = 0; y < height; ++y) {
    const Tap& t = rows[static_cast<size_t>(y)];
    if (t.i0 != upper_row) {
      if (t.i0 == lower_row) {
        std::swap(upper, lower);
        std::swap(upper_row, lower_row);
      } else {
        horizontal(src, t.i0, columns, upper);
        upper_row = t.i0;
      }
    }
    if (t.i1 != lower_row) {
      horizontal(src, t.i1, columns, lower);
      lower_row = t.i1;
    }
    uint8_t* out = dst.pixels.data() + static_cast<size_t>(y) * row_values;
    for (size_t i = 0; i < row_values; ++i) {
      const int32_t v = (((upper[i] >> 4) * t.w0) >> 16) + (((lower[i] >> 4) * t.w1) >> 16);
      out[i] = static_cast<uint8_t>(std::clamp((v + 2) >> 2, 0, 255));
    }
  }
  return dst;
}

}  // namespace arcforge::image
