#pragma once
// Face detectors on arcforge's runtime. Three families are understood, each recognised by the
// shapes of the model's outputs (never by their names):
//   SCRFD  9 outputs (score [.,K,1], bbox [.,K,4], kps [.,K,10] per stride 8/16/32, 2 anchors per
//          cell), or 6 without keypoints; with or without the batch dimension. Input RGB,
//          (x - 127.5) / 128, any multiple of 32.
//   YuNet  12 outputs (cls, obj [1,K,1], bbox [1,K,4], kps [1,K,10] per stride, 1 anchor per cell).
//          Input BGR 0..255, fixed size.
//   RFB    2 outputs (scores [1,P,2] after softmax, boxes [1,P,4] as normalised corners). Input RGB,
//          (x - 127) / 128, fixed 320x240; no landmarks.
#include <memory>
#include <string>
#include <vector>

#include "arcforge/pipeline/detection.hpp"
#include "arcforge/runtime/model.hpp"

namespace arcforge::pipeline {

enum class DetectorKind { scrfd, yunet, rfb };
const char* to_string(DetectorKind kind);

class Detector {
 public:
  virtual ~Detector() = default;
  virtual DetectorKind kind() const = 0;
  virtual bool has_landmarks() const = 0;
  // The model's input size, which every photo is letterboxed (SCRFD, YuNet) or resized (RFB) into.
  virtual int input_width() const = 0;
  virtual int input_height() const = 0;
  // Faces in one RGB photo, highest score first, after NMS and select_faces().
  virtual std::vector<Detection> detect(const image::Image& photo) const = 0;
  // Several photos; batched through the model where it accepts a batch (SCRFD with a dynamic
  // batch axis), one by one otherwise. Same results as detect() on each.
  virtual std::vector<std::vector<Detection>> detect_batch(const std::vector<image::Image>& photos) const;
  const DetectorOptions& options() const { return options_; }

 protected:
  explicit Detector(DetectorOptions options) : options_(options) {}
  DetectorOptions options_;
};

// Which family a loaded model belongs to; throws InputError naming the file and the shapes when
// none fits.
DetectorKind classify_detector(const runtime::Model& model, const std::string& path);
bool looks_like_detector(const runtime::Model& model);

std::unique_ptr<Detector> load_detector(const std::string& path, const DetectorOptions& options = {},
                                        const runtime::Options& runtime_options = {});

// The decoders, exposed for tests: raw model outputs of one image -> detections on the model's
// input canvas (before unletterbox, NMS and selection).
struct StrideOutputs {
  int stride = 0;
  const float* scores = nullptr;  // K x 1 (SCRFD) or, for YuNet, cls (K x 1)
  const float* objectness = nullptr;  // YuNet only
  const float* boxes = nullptr;   // K x 4
  const float* keypoints = nullptr;  // K x 10 or null
};
std::vector<Detection> decode_scrfd(const std::vector<StrideOutputs>& strides, int input_width, int input_height,
                                    int anchors_per_cell, float score_threshold);
std::vector<Detection> decode_yunet(const std::vector<StrideOutputs>& strides, int input_width, int input_height,
                                    float score_threshold);

}  // namespace arcforge::pipeline
