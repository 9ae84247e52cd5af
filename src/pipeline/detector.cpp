// Detector families: recognition by output shapes, loading, and the generic batch path.
#include "arcforge/pipeline/detector.hpp"

#include <optional>
#include <sstream>

#include "arcforge/common/error.hpp"
#include "detector_internal.hpp"

namespace arcforge::pipeline {

const char* to_string(DetectorKind kind) {
  switch (kind) {
    case DetectorKind::scrfd: return "scrfd";
    case DetectorKind::yunet: return "yunet";
    case DetectorKind::rfb: return "rfb";
  }
  return "?";
}

std::vector<std::vector<Detection>> Detector::detect_batch(const std::vector<image::Image>& photos) const {
  std::vector<std::vector<Detection>> out;
  out.reserve(photos.size());
  for (const auto& photo : photos) out.push_back(detect(photo));
  return out;
}

using Shapes = std::vector<std::vector<int64_t>>;

namespace detail {

// The output shapes as declared; where a declared channel count is unknown (some exporters drop
// every output dimension), the shapes of one probe run on a small black input (64x64 for dynamic
// sizes: cheap, and a multiple of every stride).
Shapes output_shapes(const runtime::Model& model) {
  Shapes shapes;
  bool known = true;
  for (const auto& o : model.outputs()) {
    shapes.push_back(o.shape);
    known = known && !o.shape.empty() && o.shape.back() > 0;
  }
  if (known || model.inputs().size() != 1 || model.inputs()[0].shape.size() != 4) return shapes;
  const auto& in = model.inputs()[0].shape;
  runtime::Tensor probe;
  probe.shape = {1, 3, in[2] > 0 ? in[2] : 64, in[3] > 0 ? in[3] : 64};
  probe.data.assign(static_cast<size_t>(probe.numel()), 0.0f);
  shapes.clear();
  for (const auto& t : model.run({probe})) shapes.push_back(t.shape);
  return shapes;
}

}  // namespace detail

namespace {

int64_t last_dim(const std::vector<int64_t>& shape) { return shape.empty() ? -1 : shape.back(); }

std::string describe_outputs(const runtime::Model& model, const Shapes& shapes) {
  std::ostringstream s;
  for (size_t i = 0; i < shapes.size(); ++i) {
    s << " " << model.outputs()[i].name << "[";
    for (size_t k = 0; k < shapes[i].size(); ++k) s << (k ? "," : "") << shapes[i][k];
    s << "]";
  }
  return s.str();
}

bool image_input(const runtime::Model& model) {
  return model.inputs().size() == 1 && model.inputs()[0].shape.size() == 4 &&
         (model.inputs()[0].shape[1] == 3 || model.inputs()[0].shape[1] == -1);
}

// SCRFD: 3 or 5 strides, each score (C=1), box (C=4) and optionally keypoints (C=10).
bool scrfd_shaped(const Shapes& outs) {
  int ones = 0, fours = 0, tens = 0;
  for (const auto& o : outs) {
    if (o.size() != 2 && o.size() != 3) return false;
    const int64_t c = last_dim(o);
    ones += c == 1;
    fours += c == 4;
    tens += c == 10;
  }
  const int n = static_cast<int>(outs.size());
  const bool strides_ok = ones == 3 || ones == 5;
  return strides_ok && fours == ones && (tens == ones || tens == 0) && ones + fours + tens == n;
}

// YuNet: 3 strides of cls and obj (C=1), box (C=4), keypoints (C=10).
bool yunet_shaped(const Shapes& outs) {
  if (outs.size() != 12) return false;
  int ones = 0, fours = 0, tens = 0;
  for (const auto& o : outs) {
    const int64_t c = last_dim(o);
    ones += c == 1;
    fours += c == 4;
    tens += c == 10;
  }
  return ones == 6 && fours == 3 && tens == 3;
}

// RFB: [1,P,2] scores and [1,P,4] boxes.
bool rfb_shaped(const Shapes& outs) {
  if (outs.size() != 2 || outs[0].size() != 3 || outs[1].size() != 3) return false;
  return (last_dim(outs[0]) == 2 && last_dim(outs[1]) == 4) || (last_dim(outs[0]) == 4 && last_dim(outs[1]) == 2);
}

std::optional<DetectorKind> kind_of(const runtime::Model& model, Shapes* shapes_out = nullptr) {
  if (!image_input(model)) return std::nullopt;
  const Shapes shapes = detail::output_shapes(model);
  if (shapes_out != nullptr) *shapes_out = shapes;
  if (yunet_shaped(shapes)) return DetectorKind::yunet;
  if (scrfd_shaped(shapes)) return DetectorKind::scrfd;
  if (rfb_shaped(shapes)) return DetectorKind::rfb;
  return std::nullopt;
}

}  // namespace

bool looks_like_detector(const runtime::Model& model) { return kind_of(model).has_value(); }

DetectorKind classify_detector(const runtime::Model& model, const std::string& path) {
  if (!image_input(model)) throw InputError(path + ": not a face detector: expected one [N,3,H,W] image input");
  Shapes shapes;
  if (auto kind = kind_of(model, &shapes)) return *kind;
  throw InputError(path + ": not a detector arcforge knows (SCRFD: 9 or 6 outputs [.,K,1|4|10]; YuNet: 12; "
                          "RFB: [1,P,2] + [1,P,4]); outputs:" + describe_outputs(model, shapes));
}

std::unique_ptr<Detector> load_detector(const std::string& path, const DetectorOptions& options,
                                        const runtime::Options& runtime_options) {
  runtime::Model model = runtime::Model::load(path, runtime_options);
  switch (classify_detector(model, path)) {
    case DetectorKind::scrfd: return detail::make_scrfd(std::move(model), path, options);
    case DetectorKind::yunet: return detail::make_yunet(std::move(model), path, options);
    case DetectorKind::rfb: return detail::make_rfb(std::move(model), path, options);
  }
  throw InputError(path + ": unknown detector kind");
}

namespace detail {

OutputView output_view(const runtime::Tensor& t, int64_t index, const std::string& path) {
  OutputView v;
  if (t.shape.size() == 3) {
    v.rows = t.shape[1];
    v.channels = t.shape[2];
    if (index >= t.shape[0]) throw InputError(path + ": detector output has fewer images than the batch");
    v.data = t.data.data() + index * v.rows * v.channels;
  } else if (t.shape.size() == 2) {
    if (index != 0) throw InputError(path + ": detector output has no batch axis");
    v.rows = t.shape[0];
    v.channels = t.shape[1];
    v.data = t.data.data();
  } else {
    throw InputError(path + ": detector output of rank " + std::to_string(t.shape.size()) + " (expected 2 or 3)");
  }
  return v;
}

void input_size(const runtime::Model& model, const DetectorOptions& options, int multiple, const std::string& path,
                int& width, int& height) {
  const auto& shape = model.inputs()[0].shape;
  height = shape[2] > 0 ? static_cast<int>(shape[2]) : options.input_height;
  width = shape[3] > 0 ? static_cast<int>(shape[3]) : options.input_width;
  if (width <= 0 || height <= 0 || width % multiple != 0 || height % multiple != 0) {
    throw InputError(path + ": detector input size " + std::to_string(width) + "x" + std::to_string(height) +
                     " must be a positive multiple of " + std::to_string(multiple));
  }
}

}  // namespace detail
}  // namespace arcforge::pipeline
