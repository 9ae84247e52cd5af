// Face quality signals (blur, pose) and the gate. See quality.hpp for the formulas and their limits.
#include "arcforge/pipeline/quality.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <numbers>
#include <string>
#include <string_view>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/pipeline/alignment.hpp"

namespace arcforge::pipeline {
namespace {

// cv::cvtColor RGB2GRAY for 8-bit: BT.601 weights scaled by 2^15 and rounded (OpenCV's RY15, GY15,
// BY15 with gray_shift 15), the weighted sum rounded half up.
std::vector<int32_t> to_gray(const image::Image& image) {
  const size_t count = static_cast<size_t>(image.width) * static_cast<size_t>(image.height);
  std::vector<int32_t> gray(count);
  const uint8_t* p = image.pixels.data();
  if (image.channels == 1) {
    for (size_t i = 0; i < count; ++i) gray[i] = p[i];
  } else {
    for (size_t i = 0; i < count; ++i, p += 3) gray[i] = (p[0] * 9798 + p[1] * 19235 + p[2] * 3735 + (1 << 14)) >> 15;
  }
  return gray;
}

// BORDER_REFLECT_101 for an index at most one step outside [0, n): -1 -> 1, n -> n - 2.
int reflect101(int i, int n) {
  if (n == 1) return 0;
  if (i < 0) return -i;
  if (i >= n) return 2 * n - 2 - i;
  return i;
}

constexpr double kDegrees = 180.0 / std::numbers::pi;
// Nose-tip depth in front of the eye and mouth plane, in inter-ocular distances (a generic face).
constexpr double kNoseDepth = 0.5;

// A landmark in the face frame: origin at the eye midpoint, x along the eye line, y perpendicular
// (down the face), unit = inter-ocular distance. Valid only when iod > 0.
struct FaceFrame {
  double cx = 0, cy = 0, ux = 1, uy = 0, iod = 0;
  explicit FaceFrame(const Landmarks5& l) {
    const double dx = static_cast<double>(l[1].x) - l[0].x, dy = static_cast<double>(l[1].y) - l[0].y;
    iod = std::hypot(dx, dy);
    if (iod > 0) ux = dx / iod, uy = dy / iod;
    cx = (static_cast<double>(l[0].x) + l[1].x) / 2, cy = (static_cast<double>(l[0].y) + l[1].y) / 2;
  }
  void map(double x, double y, double& fx, double& fy) const {
    fx = ((x - cx) * ux + (y - cy) * uy) / iod;
    fy = (-(x - cx) * uy + (y - cy) * ux) / iod;
  }
};

// Nose (x, y) and mouth-midpoint (x, y) in the face frame.
struct FaceShape {
  double nose_x = 0, nose_y = 0, mouth_x = 0, mouth_y = 0;
};

FaceShape face_shape(const Landmarks5& l, const FaceFrame& frame) {
  FaceShape s;
  frame.map(l[2].x, l[2].y, s.nose_x, s.nose_y);
  frame.map((static_cast<double>(l[3].x) + l[4].x) / 2, (static_cast<double>(l[3].y) + l[4].y) / 2, s.mouth_x,
            s.mouth_y);
  return s;
}

// "31.6", "40", "0.42": two decimals at most, trailing zeros dropped.
std::string number(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.2f", v);
  std::string s = buffer;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

double laplacian_variance(const image::Image& image) {
  if (image.empty() || (image.channels != 1 && image.channels != 3)) {
    throw InputError("laplacian_variance: empty image or unsupported channel count");
  }
  const int w = image.width, h = image.height;
  const std::vector<int32_t> gray = to_gray(image);
  auto g = [&](int x, int y) { return gray[static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)]; };
  // Integer sums are exact; the variance is formed once at the end.
  int64_t sum = 0, sum_squares = 0;
  for (int y = 0; y < h; ++y) {
    const int up = reflect101(y - 1, h), down = reflect101(y + 1, h);
    for (int x = 0; x < w; ++x) {
      const int left = reflect101(x - 1, w), right = reflect101(x + 1, w);
      const int64_t v = g(left, y) + g(right, y) + g(x, up) + g(x, down) - 4 * g(x, y);
      sum += v;
      sum_squares += v * v;
    }
  }
  const double n = static_cast<double>(w) * static_cast<double>(h);
  const double mean = static_cast<double>(sum) / n;
  return std::max(0.0, static_cast<double>(sum_squares) / n - mean * mean);
}

Pose estimate_pose(const Landmarks5& landmarks) {
  for (const Point2& p : landmarks) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) throw InputError("estimate_pose: a landmark is not finite");
  }
  static const FaceShape frontal = face_shape(arcface_template_112(), FaceFrame(arcface_template_112()));
  const FaceFrame frame(landmarks);
  Pose pose;
  if (!(frame.iod > 0)) return {90, 90, 0};  // eyes on one point: nothing to measure
  pose.roll = std::atan2(static_cast<double>(landmarks[1].y) - landmarks[0].y,
                         static_cast<double>(landmarks[1].x) - landmarks[0].x) *
              kDegrees;
  const FaceShape s = face_shape(landmarks, frame);
  if (!(s.mouth_y > 1e-6)) {
    // Mouth on or above the eye line: no face midline to measure against; the nose against the eye
    // midpoint still gives a yaw, the pitch saturates.
    pose.yaw = std::atan(s.nose_x / kNoseDepth) * kDegrees;
    pose.pitch = 90;
    return pose;
  }
  const double midline_x = s.mouth_x * s.nose_y / s.mouth_y;
  pose.yaw = std::atan((s.nose_x - midline_x) / kNoseDepth) * kDegrees;
  const double frontal_t = frontal.nose_y / frontal.mouth_y, t = s.nose_y / s.mouth_y;
  pose.pitch = std::atan((frontal_t - t) * frontal.mouth_y / kNoseDepth) * kDegrees;
  return pose;
}

std::string quality_rejection(const FaceQuality& q, const QualityGate& gate) {
  std::string reasons;
  auto fail = [&](const std::string& reason) { reasons += (reasons.empty() ? "" : "; ") + reason; };
  if (!(q.detector_score >= gate.min_detector_score)) {
    fail("score " + number(q.detector_score) + " < " + number(gate.min_detector_score));
  }
  if (!(q.face_size >= gate.min_face_size)) {
    fail("face " + number(q.face_size) + " px < " + number(gate.min_face_size) + " px");
  }
  if (!(std::abs(q.pose.yaw) <= gate.max_abs_yaw)) {
    fail("yaw " + number(q.pose.yaw) + " deg > " + number(gate.max_abs_yaw) + " deg");
  }
  if (!(std::abs(q.pose.pitch) <= gate.max_abs_pitch)) {
    fail("pitch " + number(q.pose.pitch) + " deg > " + number(gate.max_abs_pitch) + " deg");
  }
  if (!(q.blur >= gate.min_blur)) fail("blur " + number(q.blur) + " < " + number(gate.min_blur));
  return reasons;
}

QualityGate parse_quality_gate(const std::string& text) {
  QualityGate gate;
  const std::string where = "--min-quality '" + text + "'";
  if (trim(text).empty()) return gate;
  bool seen[5] = {false, false, false, false, false};
  std::string_view rest = text;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    const size_t equals = item.find('=');
    if (equals == std::string_view::npos) {
      throw ConfigError(where + ": expected key=value, got '" + std::string(item) + "'");
    }
    const std::string key(trim(item.substr(0, equals)));
    static constexpr const char* kKeys[5] = {"score", "size", "yaw", "pitch", "blur"};
    int index = -1;
    for (int i = 0; i < 5; ++i) {
      if (key == kKeys[i]) index = i;
    }
    if (index < 0) {
      throw ConfigError(where + ": unknown key '" + key + "' (expected score, size, yaw, pitch, blur)");
    }
    if (seen[index]) throw ConfigError(where + ": key '" + key + "' given twice");
    seen[index] = true;
    const std::string_view value_text = trim(item.substr(equals + 1));
    double value = 0;
    const auto [end, error] = std::from_chars(value_text.data(), value_text.data() + value_text.size(), value);
    if (value_text.empty() || error != std::errc() || end != value_text.data() + value_text.size() ||
        !std::isfinite(value) || value < 0) {
      throw ConfigError(where + ": " + key + " needs a finite number >= 0, got '" + std::string(value_text) + "'");
    }
    if ((index == 2 || index == 3) && value > 180) {
      throw ConfigError(where + ": " + key + " is an angle in degrees, at most 180, got " + number(value));
    }
    double* fields[5] = {&gate.min_detector_score, &gate.min_face_size, &gate.max_abs_yaw, &gate.max_abs_pitch,
                         &gate.min_blur};
    *fields[index] = value;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return gate;
}

}  // namespace arcforge::pipeline
