// YuNet (libfacedetection / OpenCV FaceDetectorYN): letterboxed into its fixed input, BGR 0..255,
// one anchor per cell at strides 8/16/32.
#include <algorithm>

#include "arcforge/common/error.hpp"
#include "detector_internal.hpp"

namespace arcforge::pipeline::detail {
namespace {

class YunetDetector final : public Detector {
 public:
  YunetDetector(runtime::Model model, std::string path, const DetectorOptions& options)
      : Detector(options), model_(std::move(model)), path_(std::move(path)) {
    input_size(model_, options_, 32, path_, width_, height_);
  }

  DetectorKind kind() const override { return DetectorKind::yunet; }
  bool has_landmarks() const override { return true; }
  int input_width() const override { return width_; }
  int input_height() const override { return height_; }

  std::vector<Detection> detect(const image::Image& photo) const override {
    Letterbox lb = letterbox(photo, width_, height_);
    runtime::Tensor input;
    input.shape = {1, 3, height_, width_};
    append_planar(lb.canvas, /*bgr=*/true, 0.0f, 1.0f, input.data);
    const std::vector<runtime::Tensor> outputs = model_.run({input});
    // Channel-1 outputs are cls then obj (their product is symmetric, so the order does not matter).
    std::vector<OutputView> ones, fours, tens;
    for (const auto& t : outputs) {
      OutputView v = output_view(t, 0, path_);
      (v.channels == 1 ? ones : v.channels == 4 ? fours : tens).push_back(v);
    }
    auto by_rows = [](const OutputView& a, const OutputView& b) { return a.rows > b.rows; };
    for (auto* group : {&ones, &fours, &tens}) std::stable_sort(group->begin(), group->end(), by_rows);
    std::vector<StrideOutputs> strides;
    for (int i = 0; i < 3; ++i) {
      const int stride = 8 << i;
      const int64_t cells = static_cast<int64_t>(width_ / stride) * (height_ / stride);
      if (ones[2 * i].rows != cells || ones[2 * i + 1].rows != cells || fours[i].rows != cells || tens[i].rows != cells) {
        throw InputError(path_ + ": YuNet outputs do not fit stride " + std::to_string(stride));
      }
      strides.push_back({stride, ones[2 * i].data, ones[2 * i + 1].data, fours[i].data, tens[i].data});
    }
    return finish_detections(decode_yunet(strides, width_, height_, options_.score_threshold), lb.scale, options_,
                             photo.width, photo.height);
  }

 private:
  runtime::Model model_;
  std::string path_;
  int width_ = 0, height_ = 0;
};

}  // namespace

std::unique_ptr<Detector> make_yunet(runtime::Model model, const std::string& path, const DetectorOptions& options) {
  return std::make_unique<YunetDetector>(std::move(model), path, options);
}

}  // namespace arcforge::pipeline::detail
