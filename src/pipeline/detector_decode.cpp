// Raw detector outputs -> candidate detections on the model's input canvas.
#include <cmath>
#include <algorithm>

#include "arcforge/common/error.hpp"
#include "arcforge/pipeline/detector.hpp"

namespace arcforge::pipeline {

// SCRFD (InsightFace's scrfd.py): anchor centres (col*stride, row*stride), each repeated once per
// anchor; boxes are distances left/top/right/bottom and keypoints offsets, both in stride units.
std::vector<Detection> decode_scrfd(const std::vector<StrideOutputs>& strides, int input_width, int input_height,
                                    int anchors_per_cell, float score_threshold) {
  std::vector<Detection> out;
  for (const StrideOutputs& so : strides) {
    const int s = so.stride;
    const int cols = input_width / s, rows = input_height / s;
    const int64_t count = static_cast<int64_t>(rows) * cols * anchors_per_cell;
    for (int64_t k = 0; k < count; ++k) {
      const float score = so.scores[k];
      if (!(score >= score_threshold)) continue;
      const int64_t cell = k / anchors_per_cell;
      const float cx = static_cast<float>((cell % cols) * s), cy = static_cast<float>((cell / cols) * s);
      const float* d = so.boxes + 4 * k;
      Detection det;
      det.score = score;
      det.box = {cx - d[0] * s, cy - d[1] * s, cx + d[2] * s, cy + d[3] * s};
      if (so.keypoints != nullptr) {
        det.has_landmarks = true;
        const float* kp = so.keypoints + 10 * k;
        for (int i = 0; i < 5; ++i) det.landmarks[i] = {cx + kp[2 * i] * s, cy + kp[2 * i + 1] * s};
      }
      out.push_back(det);
    }
  }
  return out;
}

// YuNet (OpenCV's FaceDetectorYN): score sqrt(cls * obj) with both clamped to [0, 1]; box centre
// (col + dx, row + dy) * stride, size exp(dw), exp(dh) * stride; keypoints (col + kx, row + ky) * stride.
std::vector<Detection> decode_yunet(const std::vector<StrideOutputs>& strides, int input_width, int input_height,
                                    float score_threshold) {
  std::vector<Detection> out;
  for (const StrideOutputs& so : strides) {
    const int s = so.stride;
    const int cols = input_width / s, rows = input_height / s;
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        const int64_t idx = static_cast<int64_t>(r) * cols + c;
        const float cls = std::clamp(so.scores[idx], 0.0f, 1.0f);
        const float obj = std::clamp(so.objectness[idx], 0.0f, 1.0f);
        const float score = std::sqrt(cls * obj);
        if (!(score >= score_threshold)) continue;
        const float* b = so.boxes + 4 * idx;
        const float cx = (c + b[0]) * s, cy = (r + b[1]) * s;
        const float w = std::exp(b[2]) * s, h = std::exp(b[3]) * s;
        Detection det;
        det.score = score;
        det.box = {cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2};
        if (so.keypoints != nullptr) {
          det.has_landmarks = true;
          const float* kp = so.keypoints + 10 * idx;
          for (int i = 0; i < 5; ++i) det.landmarks[i] = {(c + kp[2 * i]) * s, (r + kp[2 * i + 1]) * s};
        }
        out.push_back(det);
      }
    }
  }
  return out;
}

}  // namespace arcforge::pipeline
