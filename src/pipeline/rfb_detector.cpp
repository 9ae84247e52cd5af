// Ultra-Light-Fast RFB-320: the photo stretched to the input size (as its reference code does),
// RGB (x - 127) / 128; the graph already applies the priors and the softmax, so boxes come out as
// corners normalised to [0, 1]. No landmarks.
#include "arcforge/common/error.hpp"
#include "arcforge/image/resize.hpp"
#include "detector_internal.hpp"

namespace arcforge::pipeline::detail {
namespace {

class RfbDetector final : public Detector {
 public:
  RfbDetector(runtime::Model model, std::string path, const DetectorOptions& options)
      : Detector(options), model_(std::move(model)), path_(std::move(path)) {
    input_size(model_, options_, 1, path_, width_, height_);
  }

  DetectorKind kind() const override { return DetectorKind::rfb; }
  bool has_landmarks() const override { return false; }
  int input_width() const override { return width_; }
  int input_height() const override { return height_; }

  std::vector<Detection> detect(const image::Image& photo) const override {
    if (photo.empty() || photo.channels != 3) throw InputError(path_ + ": expected a non-empty RGB photo");
    const image::Image resized = image::resize_bilinear(photo, width_, height_);
    runtime::Tensor input;
    input.shape = {1, 3, height_, width_};
    append_planar(resized, /*bgr=*/false, 127.0f, 128.0f, input.data);
    const std::vector<runtime::Tensor> outputs = model_.run({input});
    OutputView a = output_view(outputs[0], 0, path_), b = output_view(outputs[1], 0, path_);
    const OutputView& scores = a.channels == 2 ? a : b;
    const OutputView& boxes = a.channels == 2 ? b : a;
    if (scores.rows != boxes.rows) throw InputError(path_ + ": RFB scores and boxes disagree on the prior count");
    std::vector<Detection> found;
    for (int64_t p = 0; p < scores.rows; ++p) {
      const float score = scores.data[2 * p + 1];
      if (!(score >= options_.score_threshold)) continue;
      const float* c = boxes.data + 4 * p;
      Detection d;
      d.score = score;
      d.box = {c[0] * photo.width, c[1] * photo.height, c[2] * photo.width, c[3] * photo.height};
      found.push_back(d);
    }
    return finish_detections(std::move(found), 1.0f, options_, photo.width, photo.height);  // boxes already in photo pixels
  }

 private:
  runtime::Model model_;
  std::string path_;
  int width_ = 0, height_ = 0;
};

}  // namespace

std::unique_ptr<Detector> make_rfb(runtime::Model model, const std::string& path, const DetectorOptions& options) {
  return std::make_unique<RfbDetector>(std::move(model), path, options);
}

}  // namespace arcforge::pipeline::detail
