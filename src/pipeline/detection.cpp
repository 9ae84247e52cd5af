// Post-processing shared by every detector, written to match InsightFace's SCRFD.detect step by step.
#include "arcforge/pipeline/detection.hpp"

#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include "arcforge/common/error.hpp"
#include "arcforge/image/resize.hpp"

namespace arcforge::pipeline {

std::vector<Detection> non_maximum_suppression(std::vector<Detection> detections, float iou_threshold) {
  std::stable_sort(detections.begin(), detections.end(),
                   [](const Detection& a, const Detection& b) { return a.score > b.score; });
  auto pixel_area = [](const Box& b) { return (b.x2 - b.x1 + 1) * (b.y2 - b.y1 + 1); };
  std::vector<Detection> kept;
  std::vector<bool> dropped(detections.size(), false);
  for (size_t i = 0; i < detections.size(); ++i) {
    if (dropped[i]) continue;
    const Box& a = detections[i].box;
    kept.push_back(detections[i]);
    for (size_t j = i + 1; j < detections.size(); ++j) {
      if (dropped[j]) continue;
      const Box& b = detections[j].box;
      const float w = std::max(0.0f, std::min(a.x2, b.x2) - std::max(a.x1, b.x1) + 1);
      const float h = std::max(0.0f, std::min(a.y2, b.y2) - std::max(a.y1, b.y1) + 1);
      const float inter = w * h;
      const float overlap = inter / (pixel_area(a) + pixel_area(b) - inter);
      if (overlap > iou_threshold) dropped[j] = true;
    }
  }
  return kept;
}

std::vector<Detection> select_faces(std::vector<Detection> detections, const DetectorOptions& options,
                                    int photo_width, int photo_height) {
  if (options.min_face_size > 0) {
    std::erase_if(detections, [&](const Detection& d) {
      return std::min(d.box.width(), d.box.height()) < options.min_face_size;
    });
  }
  if (options.max_faces <= 0 || static_cast<int>(detections.size()) <= options.max_faces) return detections;
  // InsightFace: area - 2 * squared distance of the box centre from the image centre (integer halves).
  const double cx = photo_width / 2, cy = photo_height / 2;
  std::vector<double> value(detections.size());
  for (size_t i = 0; i < detections.size(); ++i) {
    const Box& b = detections[i].box;
    const double dx = (b.x1 + b.x2) / 2.0 - cx, dy = (b.y1 + b.y2) / 2.0 - cy;
    value[i] = static_cast<double>(b.width()) * b.height() - 2.0 * (dx * dx + dy * dy);
  }
  std::vector<size_t> order(detections.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return value[a] > value[b]; });
  std::vector<Detection> selected;
  for (int i = 0; i < options.max_faces; ++i) selected.push_back(detections[order[i]]);
  return selected;
}

const Detection& largest_face(const std::vector<Detection>& detections, const std::string& name_for_errors) {
  if (detections.empty()) throw InputError(name_for_errors + ": no face found");
  return *std::max_element(detections.begin(), detections.end(), [](const Detection& a, const Detection& b) {
    return a.box.area() < b.box.area();
  });
}

Letterbox letterbox(const image::Image& photo, int width, int height) {
  if (photo.empty() || photo.channels != 3) throw InputError("letterbox: expected a non-empty RGB image");
  const double photo_ratio = static_cast<double>(photo.height) / photo.width;
  const double input_ratio = static_cast<double>(height) / width;
  int new_width = width, new_height = height;
  if (photo_ratio > input_ratio) {
    new_width = std::max(1, static_cast<int>(new_height / photo_ratio));
  } else {
    new_height = std::max(1, static_cast<int>(new_width * photo_ratio));
  }
  Letterbox out;
  out.scale = static_cast<float>(static_cast<double>(new_height) / photo.height);
  out.canvas = image::Image(width, height, 3);
  const image::Image resized = image::resize_bilinear(photo, new_width, new_height);
  for (int y = 0; y < new_height; ++y) {
    std::copy_n(resized.pixels.data() + static_cast<size_t>(y) * resized.row_bytes(), resized.row_bytes(),
                out.canvas.pixels.data() + static_cast<size_t>(y) * out.canvas.row_bytes());
  }
  return out;
}

void append_planar(const image::Image& rgb, bool bgr, float mean, float std, std::vector<float>& out) {
  const size_t plane = static_cast<size_t>(rgb.width) * rgb.height;
  const size_t base = out.size();
  out.resize(base + 3 * plane);
  const float inv = 1.0f / std;
  // One pass over the interleaved pixels, three planes written at once: the compiler turns the
  // stride-3 loads into vector shuffles (three strided passes ran 2-3x slower).
  float* first = out.data() + base;
  float* second = first + plane;
  float* third = second + plane;
  if (bgr) std::swap(first, third);
  const uint8_t* src = rgb.pixels.data();
  for (size_t i = 0; i < plane; ++i) {
    first[i] = (static_cast<float>(src[3 * i]) - mean) * inv;
    second[i] = (static_cast<float>(src[3 * i + 1]) - mean) * inv;
    third[i] = (static_cast<float>(src[3 * i + 2]) - mean) * inv;
  }
}

void unletterbox(std::vector<Detection>& detections, float scale) {
  // Division, not a multiplication by 1/scale: InsightFace divides by det_scale.
  for (auto& d : detections) {
    d.box = {d.box.x1 / scale, d.box.y1 / scale, d.box.x2 / scale, d.box.y2 / scale};
    for (auto& p : d.landmarks) p = {p.x / scale, p.y / scale};
  }
}

std::vector<Detection> finish_detections(std::vector<Detection> found, float scale, const DetectorOptions& options,
                                         int photo_width, int photo_height) {
  if (scale != 1.0f) unletterbox(found, scale);
  found = non_maximum_suppression(std::move(found), options.nms_iou);
  return select_faces(std::move(found), options, photo_width, photo_height);
}

}  // namespace arcforge::pipeline
