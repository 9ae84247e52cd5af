// cv::warpAffine (INTER_LINEAR, BORDER_CONSTANT) for 8-bit images. The destination is walked row by
// row; along a row the source position advances by a constant step, precomputed per column in the
// same fixed point as OpenCV (10 fractional bits, rounded to 5) so that both pick the same pixels
// and the same 1/32-pixel fractions. The four weights are products of multiples of 1/32, so in float
// they and the weighted sum are exact, and rounding half up gives OpenCV's (sum + 2^14) >> 15.
#include "arcforge/image/warp.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "arcforge/common/error.hpp"

namespace arcforge::image {
namespace {

constexpr int kPositionBits = 10;                      // OpenCV's AB_BITS
constexpr int kFractionBits = 5;                       // OpenCV's INTER_BITS
constexpr int kFractionSteps = 1 << kFractionBits;     // INTER_TAB_SIZE
constexpr double kPositionScale = 1 << kPositionBits;  // AB_SCALE
constexpr int kRoundDelta = (1 << kPositionBits) / kFractionSteps / 2;

// saturate_cast<int>(double): round half to even, clamped to int.
int to_fixed(double v) {
  if (!(v > std::numeric_limits<int>::min())) return std::numeric_limits<int>::min();
  if (!(v < std::numeric_limits<int>::max())) return std::numeric_limits<int>::max();
  return static_cast<int>(std::nearbyint(v));
}

}  // namespace

Image warp_affine(const Image& src, const std::array<double, 6>& source_to_destination, int width, int height,
                  uint8_t border) {
  if (src.empty() || (src.channels != 1 && src.channels != 3)) {
    throw std::invalid_argument("warp_affine: empty source or unsupported channel count");
  }
  if (width <= 0 || height <= 0) throw std::invalid_argument("warp_affine: non-positive destination size");

  // Destination -> source, inverted the way cv::warpAffine does it.
  const auto& f = source_to_destination;
  const double det = f[0] * f[4] - f[1] * f[3];
  if (det == 0 || !std::isfinite(det)) {
    throw InputError("warp_affine: the affine map is singular (determinant " + std::to_string(det) + ")");
  }
  const double inv = 1.0 / det;
  const double m0 = f[4] * inv, m1 = -f[1] * inv, m3 = -f[3] * inv, m4 = f[0] * inv;
  const double m2 = -m0 * f[2] - m1 * f[5], m5 = -m3 * f[2] - m4 * f[5];

  std::vector<int> column_dx(static_cast<size_t>(width)), column_dy(static_cast<size_t>(width));
  for (int x = 0; x < width; ++x) {
    column_dx[static_cast<size_t>(x)] = to_fixed(m0 * x * kPositionScale);
    column_dy[static_cast<size_t>(x)] = to_fixed(m3 * x * kPositionScale);
  }

  // Weights of the 1/32-pixel fractions (exact in float).
  std::array<float, kFractionSteps> weight{};
  for (int i = 0; i < kFractionSteps; ++i) weight[static_cast<size_t>(i)] = static_cast<float>(i) / kFractionSteps;

  Image dst(width, height, src.channels);
  const int channels = src.channels;
  const int sw = src.width, sh = src.height;
  const size_t stride = src.row_bytes();
  const uint8_t* source = src.pixels.data();
  const float border_value = border;
  for (int y = 0; y < height; ++y) {
    const int64_t x0 = static_cast<int64_t>(to_fixed((m1 * y + m2) * kPositionScale)) + kRoundDelta;
    const int64_t y0 = static_cast<int64_t>(to_fixed((m4 * y + m5) * kPositionScale)) + kRoundDelta;
    uint8_t* out = dst.pixels.data() + static_cast<size_t>(y) * dst.row_bytes();
    for (int x = 0; x < width; ++x, out += channels) {
      const int64_t fx = (x0 + column_dx[static_cast<size_t>(x)]) >> (kPositionBits - kFractionBits);
      const int64_t fy = (y0 + column_dy[static_cast<size_t>(x)]) >> (kPositionBits - kFractionBits);
      const int64_t sx = fx >> kFractionBits, sy = fy >> kFractionBits;
      if (sx >= sw || sx + 1 < 0 || sy >= sh || sy + 1 < 0) {
        for (int c = 0; c < channels; ++c) out[c] = border;
        continue;
      }
      const float ax = weight[static_cast<size_t>(fx & (kFractionSteps - 1))];
      const float ay = weight[static_cast<size_t>(fy & (kFractionSteps - 1))];
      const float w00 = (1 - ax) * (1 - ay), w01 = ax * (1 - ay), w10 = (1 - ax) * ay, w11 = ax * ay;
      const int ix = static_cast<int>(sx), iy = static_cast<int>(sy);
      if (ix >= 0 && iy >= 0 && ix + 1 < sw && iy + 1 < sh) {
        const uint8_t* p = source + static_cast<size_t>(iy) * stride + static_cast<size_t>(ix) * channels;
        const uint8_t* q = p + stride;
        for (int c = 0; c < channels; ++c) {
          const float v = w00 * p[c] + w01 * p[c + channels] + w10 * q[c] + w11 * q[c + channels];
          out[c] = static_cast<uint8_t>(std::min(255.0f, v + 0.5f));
        }
        continue;
      }
      // At the edge: neighbours outside the image read as the border value.
      const bool x_in0 = ix >= 0, x_in1 = ix + 1 < sw, y_in0 = iy >= 0, y_in1 = iy + 1 < sh;
      for (int c = 0; c < channels; ++c) {
        auto at = [&](bool inside, int px, int py) -> float {
          return inside ? source[static_cast<size_t>(py) * stride + static_cast<size_t>(px) * channels + c]
                        : border_value;
        };
        const float v = w00 * at(x_in0 && y_in0, ix, iy) + w01 * at(x_in1 && y_in0, ix + 1, iy) +
                        w10 * at(x_in0 && y_in1, ix, iy + 1) + w11 * at(x_in1 && y_in1, ix + 1, iy + 1);
        out[c] = static_cast<uint8_t>(std::min(255.0f, v + 0.5f));
      }
    }
  }
  return dst;
}

}  // namespace arcforge::image
