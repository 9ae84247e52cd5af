// resize_bilinear and warp_affine against references written here in double precision (no OpenCV
// in the core binary; the OpenCV comparisons live in tests/pipeline/test_alignment.cpp):
// - the identity warp and integer translations are exact copies / shifts with a border;
// - a 2x upsample warp samples at half pixels, exactly representable, so it must equal the double
//   reference byte for byte; general warps of smooth images agree within one grey level (the warp
//   rounds source positions to 1/32 px like OpenCV, worth < 1 level on a gentle slope);
// - resize follows OpenCV's 8-bit fixed point: within one level of exact bilinear (and never above
//   it on average), spot values worked out by hand from that fixed point, exact 2x2 block averages
//   for a 2x reduction.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <numbers>
#include <stdexcept>
#include <utility>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/image/image.hpp"
#include "arcforge/image/resize.hpp"
#include "arcforge/image/warp.hpp"

namespace ai = arcforge::image;

namespace {

ai::Image random_image(int width, int height, int channels, uint32_t seed) {
  ai::Image image(width, height, channels);
  std::mt19937 rng(seed);
  for (auto& v : image.pixels) v = static_cast<uint8_t>(rng() & 0xFF);
  return image;
}

// A slowly varying image: at most a few grey levels per pixel in any direction.
ai::Image smooth_image(int width, int height, int channels) {
  ai::Image image(width, height, channels);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        const double v = 127.5 + 100 * std::sin(0.05 * x + 0.7 * c) * std::cos(0.04 * y - 0.3 * c);
        image.at(x, y, c) = static_cast<uint8_t>(std::lround(v));
      }
    }
  }
  return image;
}

uint8_t round_half_up(double v) { return static_cast<uint8_t>(std::clamp(std::floor(v + 0.5), 0.0, 255.0)); }

// Exact bilinear sample at (x, y) with out-of-image pixels reading `border`.
double sample_constant(const ai::Image& src, double x, double y, int c, double border) {
  const int x0 = static_cast<int>(std::floor(x)), y0 = static_cast<int>(std::floor(y));
  const double ax = x - x0, ay = y - y0;
  auto px = [&](int xi, int yi) -> double {
    if (xi < 0 || yi < 0 || xi >= src.width || yi >= src.height) return border;
    return src.at(xi, yi, c);
  };
  return (1 - ax) * (1 - ay) * px(x0, y0) + ax * (1 - ay) * px(x0 + 1, y0) + (1 - ax) * ay * px(x0, y0 + 1) +
         ax * ay * px(x0 + 1, y0 + 1);
}

// Warp reference: invert M in double, sample exactly, round half up. Destination pixels whose
// source position lies a full pixel or more outside the image are the border, as in OpenCV.
ai::Image reference_warp(const ai::Image& src, const std::array<double, 6>& m, int width, int height, uint8_t border) {
  const double det = m[0] * m[4] - m[1] * m[3];
  const double i0 = m[4] / det, i1 = -m[1] / det, i3 = -m[3] / det, i4 = m[0] / det;
  const double i2 = -(i0 * m[2] + i1 * m[5]), i5 = -(i3 * m[2] + i4 * m[5]);
  ai::Image dst(width, height, src.channels);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double sx = i0 * x + i1 * y + i2, sy = i3 * x + i4 * y + i5;
      for (int c = 0; c < src.channels; ++c) dst.at(x, y, c) = round_half_up(sample_constant(src, sx, sy, c, border));
    }
  }
  return dst;
}

// Resize reference: cv::resize's centre-aligned positions with clamping, in double.
ai::Image reference_resize(const ai::Image& src, int width, int height) {
  auto tap = [](int d, int source, int destination, int& i0, int& i1, double& a) {
    const double position = (d + 0.5) * source / destination - 0.5;
    i0 = static_cast<int>(std::floor(position));
    a = position - i0;
    if (i0 < 0) i0 = 0, a = 0;
    if (i0 >= source - 1) i0 = source - 1, a = 0;
    i1 = std::min(i0 + 1, source - 1);
  };
  ai::Image dst(width, height, src.channels);
  for (int y = 0; y < height; ++y) {
    int y0, y1;
    double ay;
    tap(y, src.height, height, y0, y1, ay);
    for (int x = 0; x < width; ++x) {
      int x0, x1;
      double ax;
      tap(x, src.width, width, x0, x1, ax);
      for (int c = 0; c < src.channels; ++c) {
        const double v = (1 - ay) * ((1 - ax) * src.at(x0, y0, c) + ax * src.at(x1, y0, c)) +
                         ay * ((1 - ax) * src.at(x0, y1, c) + ax * src.at(x1, y1, c));
        dst.at(x, y, c) = round_half_up(v);
      }
    }
  }
  return dst;
}

int max_abs_diff(const ai::Image& a, const ai::Image& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  EXPECT_EQ(a.channels, b.channels);
  if (a.pixels.size() != b.pixels.size()) return 256;
  int worst = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) worst = std::max(worst, std::abs(a.pixels[i] - b.pixels[i]));
  return worst;
}

std::array<double, 6> similarity(double scale, double degrees, double tx, double ty) {
  const double r = degrees * std::numbers::pi / 180;
  return {scale * std::cos(r), -scale * std::sin(r), tx, scale * std::sin(r), scale * std::cos(r), ty};
}

class ResizeWarpChannels : public ::testing::TestWithParam<int> {};

TEST_P(ResizeWarpChannels, IdentityWarpIsAnExactCopy) {
  const ai::Image src = random_image(37, 23, GetParam(), 1);
  const ai::Image dst = ai::warp_affine(src, {1, 0, 0, 0, 1, 0}, src.width, src.height);
  EXPECT_EQ(dst.pixels, src.pixels);
}

TEST_P(ResizeWarpChannels, IntegerTranslationIsAShiftWithABorder) {
  const int channels = GetParam();
  const ai::Image src = random_image(30, 20, channels, 2);
  for (const auto& [tx, ty] : std::array<std::pair<int, int>, 4>{{{3, -2}, {-5, 4}, {0, 7}, {-31, 0}}}) {
    const uint8_t border = 77;
    const ai::Image dst = ai::warp_affine(src, {1, 0, double(tx), 0, 1, double(ty)}, 26, 24, border);
    ASSERT_EQ(dst.width, 26);
    ASSERT_EQ(dst.height, 24);
    for (int y = 0; y < dst.height; ++y) {
      for (int x = 0; x < dst.width; ++x) {
        const int sx = x - tx, sy = y - ty;
        const bool inside = sx >= 0 && sy >= 0 && sx < src.width && sy < src.height;
        for (int c = 0; c < channels; ++c) {
          ASSERT_EQ(dst.at(x, y, c), inside ? src.at(sx, sy, c) : border)
              << "shift " << tx << "," << ty << " at " << x << "," << y;
        }
      }
    }
  }
}

TEST_P(ResizeWarpChannels, TwoTimesUpsampleWarpEqualsTheDoubleReference) {
  const ai::Image src = random_image(21, 17, GetParam(), 3);
  const std::array<double, 6> m{2, 0, 0, 0, 2, 0};
  const ai::Image ours = ai::warp_affine(src, m, 45, 37);  // reaches past the image: border blend
  EXPECT_EQ(ours.pixels, reference_warp(src, m, 45, 37, 0).pixels);
}

// Resize uses OpenCV's fixed point (11-bit weights; its vertical pass floors two partial products
// before rounding), so against exact bilinear it is within one level and a little low on average.
struct Agreement {
  int max = 0;
  double mean_abs = 0, mean_signed = 0;
};

Agreement agreement(const ai::Image& ours, const ai::Image& reference) {
  EXPECT_EQ(ours.pixels.size(), reference.pixels.size());
  Agreement a;
  if (ours.pixels.size() != reference.pixels.size()) return {256, 256, 256};
  for (size_t i = 0; i < ours.pixels.size(); ++i) {
    const int d = ours.pixels[i] - reference.pixels[i];
    a.max = std::max(a.max, std::abs(d));
    a.mean_abs += std::abs(d);
    a.mean_signed += d;
  }
  a.mean_abs /= static_cast<double>(ours.pixels.size());
  a.mean_signed /= static_cast<double>(ours.pixels.size());
  return a;
}

TEST_P(ResizeWarpChannels, TwoTimesUpsampleResizeAgreesWithTheDoubleReference) {
  const ai::Image src = random_image(19, 13, GetParam(), 4);
  const ai::Image ours = ai::resize_bilinear(src, 38, 26);
  const Agreement a = agreement(ours, reference_resize(src, 38, 26));
  EXPECT_LE(a.max, 1);
  EXPECT_LT(a.mean_abs, 0.4);
  for (int c = 0; c < src.channels; ++c) {
    // Output (0,0) samples (-0.25,-0.25): clamped onto source (0,0), exactly.
    EXPECT_EQ(ours.at(0, 0, c), src.at(0, 0, c));
    EXPECT_EQ(ours.at(37, 25, c), src.at(18, 12, c));  // the far corner likewise
    // Output (1,1) samples (0.25,0.25): weights 0.75/0.25 = 1536/2048 and 512/2048 both ways.
    // Horizontal sums h = 1536 p0 + 512 p1 per row; vertical as OpenCV's 8-bit kernel:
    // ((h0 >> 4) * 1536 >> 16) + ((h1 >> 4) * 512 >> 16), then (v + 2) >> 2.
    const int h0 = 1536 * src.at(0, 0, c) + 512 * src.at(1, 0, c);
    const int h1 = 1536 * src.at(0, 1, c) + 512 * src.at(1, 1, c);
    const int v = (((h0 >> 4) * 1536) >> 16) + (((h1 >> 4) * 512) >> 16);
    EXPECT_EQ(ours.at(1, 1, c), (v + 2) >> 2);
  }
}

TEST_P(ResizeWarpChannels, ResizeAgreesWithTheDoubleReferenceAtOddScales) {
  const int channels = GetParam();
  const ai::Image src = random_image(101, 77, channels, 5);
  for (const auto& [w, h] : std::array<std::pair<int, int>, 5>{{{640, 480}, {33, 29}, {202, 154}, {7, 150}, {1, 1}}}) {
    const Agreement a = agreement(ai::resize_bilinear(src, w, h), reference_resize(src, w, h));
    EXPECT_LE(a.max, 1) << w << "x" << h;
    EXPECT_LT(a.mean_abs, 0.4) << w << "x" << h;
    EXPECT_LE(a.mean_signed, 0.0) << w << "x" << h;  // the floors only ever lower a value
  }
  // Same size is the identity.
  EXPECT_EQ(ai::resize_bilinear(src, src.width, src.height).pixels, src.pixels);
  // An exact 2x reduction averages 2x2 blocks, rounding half up (OpenCV's INTER_AREA fast path).
  const ai::Image even = random_image(100, 76, channels, 6);
  const ai::Image half = ai::resize_bilinear(even, 50, 38);
  for (int y = 0; y < 38; ++y) {
    for (int x = 0; x < 50; ++x) {
      for (int c = 0; c < channels; ++c) {
        const int sum = even.at(2 * x, 2 * y, c) + even.at(2 * x + 1, 2 * y, c) + even.at(2 * x, 2 * y + 1, c) +
                        even.at(2 * x + 1, 2 * y + 1, c);
        ASSERT_EQ(half.at(x, y, c), (sum + 2) >> 2) << x << "," << y;
      }
    }
  }
}

TEST_P(ResizeWarpChannels, RotatedScaledWarpOfASmoothImageIsWithinOneLevel) {
  const int channels = GetParam();
  const ai::Image src = smooth_image(160, 120, channels);
  for (const auto& m : {similarity(0.8, 17, 12.3, -7.9), similarity(1.7, -33, -40.5, 25.25),
                        similarity(0.5, 90, 70, 3.3)}) {
    const ai::Image ours = ai::warp_affine(src, m, 112, 112);
    const ai::Image reference = reference_warp(src, m, 112, 112, 0);
    // Inside the image the slope is <= 5 levels/px, so a 1/64 px position error is < 0.1 level.
    // At the image edge the blend with the black border has a 255-level step; skip those pixels.
    const auto inv = ai::warp_affine(src, m, 112, 112, 255);
    int worst = 0;
    for (int y = 0; y < 112; ++y) {
      for (int x = 0; x < 112; ++x) {
        for (int c = 0; c < channels; ++c) {
          if (inv.at(x, y, c) != ours.at(x, y, c)) continue;  // touched by the border
          worst = std::max(worst, std::abs(ours.at(x, y, c) - reference.at(x, y, c)));
        }
      }
    }
    EXPECT_LE(worst, 1);
  }
}

INSTANTIATE_TEST_SUITE_P(GrayAndRgb, ResizeWarpChannels, ::testing::Values(1, 3));

TEST(Warp, SourceEntirelyOutsideGivesTheBorderEverywhere) {
  const ai::Image src = random_image(10, 10, 3, 6);
  const ai::Image dst = ai::warp_affine(src, {1, 0, 500, 0, 1, -300}, 8, 8, 9);
  for (uint8_t v : dst.pixels) EXPECT_EQ(v, 9);
}

TEST(Warp, HalfPixelShiftBlendsWithTheBorderAtTheEdge) {
  ai::Image src(4, 1, 1);
  src.pixels = {100, 200, 50, 250};
  // dst(x) = src(x - 0.5): (src[x-1] + src[x]) / 2, with src[-1] = 0.
  const ai::Image dst = ai::warp_affine(src, {1, 0, 0.5, 0, 1, 0}, 5, 1);
  const std::vector<uint8_t> expected = {50, 150, 125, 150, 125};
  EXPECT_EQ(dst.pixels, expected);
}

TEST(Warp, RejectsSingularMapsAndBadSizes) {
  const ai::Image src = random_image(5, 5, 1, 7);
  EXPECT_THROW(ai::warp_affine(src, {1, 2, 0, 2, 4, 0}, 5, 5), arcforge::InputError);
  EXPECT_THROW(ai::warp_affine(src, {0, 0, 0, 0, 0, 0}, 5, 5), arcforge::InputError);
  EXPECT_THROW(ai::warp_affine(src, {1, 0, 0, 0, 1, 0}, 0, 5), std::invalid_argument);
  EXPECT_THROW(ai::warp_affine(ai::Image(), {1, 0, 0, 0, 1, 0}, 5, 5), std::invalid_argument);
}

TEST(Resize, RejectsEmptySourceAndBadSizes) {
  EXPECT_THROW(ai::resize_bilinear(ai::Image(), 4, 4), std::invalid_argument);
  EXPECT_THROW(ai::resize_bilinear(random_image(3, 3, 3, 8), -1, 4), std::invalid_argument);
  EXPECT_THROW(ai::resize_bilinear(random_image(3, 3, 3, 8), 4, 0), std::invalid_argument);
}

TEST(Resize, ConstantImageStaysConstantAtAnyScale) {
  ai::Image src(123, 45, 3);
  for (size_t i = 0; i < src.pixels.size(); ++i) src.pixels[i] = static_cast<uint8_t>(40 + 80 * (i % 3));
  for (const auto& [w, h] : std::array<std::pair<int, int>, 3>{{{640, 640}, {17, 3}, {1000, 1}}}) {
    const ai::Image dst = ai::resize_bilinear(src, w, h);
    for (size_t i = 0; i < dst.pixels.size(); ++i) ASSERT_EQ(dst.pixels[i], 40 + 80 * (i % 3));
  }
}

TEST(Resize, LargePhotoToDetectorInputKeepsItsShape) {
  // A 4000x3000 photo to 640x480: the cost is in the output, so this runs in milliseconds.
  const ai::Image src = smooth_image(4000, 3000, 3);
  const ai::Image dst = ai::resize_bilinear(src, 640, 480);
  ASSERT_EQ(dst.width, 640);
  ASSERT_EQ(dst.height, 480);
  EXPECT_LE(max_abs_diff(dst, reference_resize(src, 640, 480)), 1);
}

}  // namespace
