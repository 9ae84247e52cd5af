#pragma once
// Plain 2-D geometry shared by the face pipeline: points, the five facial landmarks, boxes and 2x3
// affine maps. Coordinates are image pixels with x to the right and y down; a pixel's centre is at
// its integer coordinates (OpenCV's convention, which InsightFace's landmarks and templates use).
#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "arcforge/common/error.hpp"

namespace arcforge::pipeline {

struct Point2 {
  float x = 0, y = 0;
};

// Left eye, right eye, nose tip, left mouth corner, right mouth corner, in InsightFace's order:
// "left" is the one with the smaller x in an upright, frontal photo (the subject's right).
using Landmarks5 = std::array<Point2, 5>;

// An axis-aligned box, corners (x1, y1) top-left and (x2, y2) bottom-right, in continuous pixel
// coordinates (width = x2 - x1, no +1). A box with x2 < x1 or y2 < y1 has zero area.
struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float width() const { return x2 - x1; }
  float height() const { return y2 - y1; }
  float area() const { return std::max(0.0f, width()) * std::max(0.0f, height()); }
};

// Intersection over union with continuous areas; 0 when both boxes are empty.
inline float iou(const Box& a, const Box& b) {
  const float w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const float h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  const float inter = std::max(0.0f, w) * std::max(0.0f, h);
  const float uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0.0f;
}

// A 2x3 affine map, row-major [a b tx; c d ty]: (x, y) -> (a x + b y + tx, c x + d y + ty). Used
// source -> destination, as cv2.warpAffine takes it.
struct Affine2x3 {
  std::array<double, 6> m{1, 0, 0, 0, 1, 0};

  Point2 apply(Point2 p) const {
    return {static_cast<float>(m[0] * p.x + m[1] * p.y + m[2]), static_cast<float>(m[3] * p.x + m[4] * p.y + m[5])};
  }

  double determinant() const { return m[0] * m[4] - m[1] * m[3]; }

  // The map back (cv::invertAffineTransform). Throws InputError when the linear part is singular
  // or not finite: such a map comes from degenerate landmarks and has no inverse to warp with.
  Affine2x3 inverse() const {
    const double det = determinant();
    if (det == 0 || !std::isfinite(det)) {
      throw InputError("affine map is singular (determinant " + std::to_string(det) + "), it has no inverse");
    }
    const double a = m[4] / det, b = -m[1] / det, c = -m[3] / det, d = m[0] / det;
    return Affine2x3{{a, b, -(a * m[2] + b * m[5]), c, d, -(c * m[2] + d * m[5])}};
  }
};

}  // namespace arcforge::pipeline
