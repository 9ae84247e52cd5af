// SCRFD as InsightFace's scrfd.py runs it: letterbox to the input size, RGB (x - 127.5) / 128,
// decode per stride, divide by the letterbox scale, NMS, then select.
#include <algorithm>
#include <map>

#include "arcforge/common/error.hpp"
#include "detector_internal.hpp"

namespace arcforge::pipeline::detail {
namespace {

// Images per model call in detect_batch: enough to amortise per-call overhead, bounded memory (16 x 4.9 MB at 640).
constexpr size_t kMaxBatch = 16;

class ScrfdDetector final : public Detector {
 public:
  ScrfdDetector(runtime::Model model, std::string path, const DetectorOptions& options)
      : Detector(options), model_(std::move(model)), path_(std::move(path)) {
    input_size(model_, options_, 32, path_, width_, height_);
    int tens = 0, ones = 0;
    const auto shapes = output_shapes(model_);
    for (const auto& shape : shapes) {
      tens += shape.back() == 10;
      ones += shape.back() == 1;
    }
    keypoints_ = tens > 0;
    strides_ = ones;
    batched_ = model_.inputs()[0].shape[0] != 1 && shapes.front().size() == 3;
  }

  DetectorKind kind() const override { return DetectorKind::scrfd; }
  bool has_landmarks() const override { return keypoints_; }
  int input_width() const override { return width_; }
  int input_height() const override { return height_; }

  std::vector<Detection> detect(const image::Image& photo) const override {
    return detect_batch({photo}).front();
  }

  std::vector<std::vector<Detection>> detect_batch(const std::vector<image::Image>& photos) const override {
    std::vector<std::vector<Detection>> results;
    const size_t chunk = batched_ ? kMaxBatch : 1;
    for (size_t start = 0; start < photos.size(); start += chunk) {
      const size_t end = std::min(photos.size(), start + chunk);
      std::vector<float> scales;
      runtime::Tensor input;
      input.shape = {static_cast<int64_t>(end - start), 3, height_, width_};
      input.data.reserve(static_cast<size_t>(input.numel()));
      for (size_t i = start; i < end; ++i) {
        Letterbox lb = letterbox(photos[i], width_, height_);
        append_planar(lb.canvas, /*bgr=*/false, 127.5f, 128.0f, input.data);
        scales.push_back(lb.scale);
      }
      const std::vector<runtime::Tensor> outputs = model_.run({input});
      for (size_t i = start; i < end; ++i) {
        results.push_back(finish_detections(decode(outputs, static_cast<int64_t>(i - start)), scales[i - start],
                                            options_, photos[i].width, photos[i].height));
      }
    }
    return results;
  }

 private:
  // Outputs grouped by channel count (1 score, 4 box, 10 keypoints); within a group the largest K
  // is the finest stride. Anchors per cell follow from K and the grid.
  std::vector<Detection> decode(const std::vector<runtime::Tensor>& outputs, int64_t index) const {
    std::map<int64_t, std::vector<OutputView>> by_channels;
    for (const auto& t : outputs) {
      OutputView v = output_view(t, index, path_);
      by_channels[v.channels].push_back(v);
    }
    auto& scores = by_channels[1];
    auto& boxes = by_channels[4];
    auto& kps = by_channels[10];
    auto by_rows = [](const OutputView& a, const OutputView& b) { return a.rows > b.rows; };
    for (auto* group : {&scores, &boxes, &kps}) std::stable_sort(group->begin(), group->end(), by_rows);
    if (static_cast<int>(scores.size()) != strides_ || boxes.size() != scores.size() ||
        (keypoints_ && kps.size() != scores.size())) {
      throw InputError(path_ + ": SCRFD outputs do not group into score/bbox/kps per stride");
    }
    std::vector<StrideOutputs> strides;
    int anchors = 0;
    for (int i = 0; i < strides_; ++i) {
      const int stride = 8 << i;
      const int64_t cells = static_cast<int64_t>(width_ / stride) * (height_ / stride);
      const int64_t rows = scores[i].rows;
      if (cells == 0 || rows % cells != 0 || boxes[i].rows != rows || (keypoints_ && kps[i].rows != rows)) {
        throw InputError(path_ + ": SCRFD output of " + std::to_string(rows) + " rows does not fit stride " +
                         std::to_string(stride) + " at " + std::to_string(width_) + "x" + std::to_string(height_));
      }
      const int a = static_cast<int>(rows / cells);
      if (anchors != 0 && a != anchors) throw InputError(path_ + ": SCRFD strides disagree on anchors per cell");
      anchors = a;
      strides.push_back({stride, scores[i].data, nullptr, boxes[i].data, keypoints_ ? kps[i].data : nullptr});
    }
    return decode_scrfd(strides, width_, height_, anchors, options_.score_threshold);
  }

  runtime::Model model_;
  std::string path_;
  int width_ = 0, height_ = 0, strides_ = 3;
  bool keypoints_ = true, batched_ = false;
};

}  // namespace

std::unique_ptr<Detector> make_scrfd(runtime::Model model, const std::string& path, const DetectorOptions& options) {
  return std::make_unique<ScrfdDetector>(std::move(model), path, options);
}

}  // namespace arcforge::pipeline::detail
