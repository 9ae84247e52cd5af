// FaceAnalyzer: detector + alignment + recognizer + quality, glued the way InsightFace's
// FaceAnalysis is.
#include "arcforge/pipeline/face_analyzer.hpp"

#include <limits>

#include "arcforge/common/error.hpp"

namespace arcforge::pipeline {

FaceAnalyzer::FaceAnalyzer(const std::string& detector_path, const std::string& recognizer_path,
                           AnalyzerOptions options)
    : options_(std::move(options)) {
  if (detector_path.empty() && recognizer_path.empty()) {
    throw ConfigError("FaceAnalyzer: give a detector, a recognizer, or both");
  }
  if (!detector_path.empty()) {
    detector_ = load_detector(detector_path, options_.detector, options_.detector_runtime.value_or(options_.runtime));
  }
  if (!recognizer_path.empty()) {
    recognizer_ = Recognizer::load(recognizer_path, options_.recognizer_spec, options_.runtime);
  }
}

FaceAnalyzer FaceAnalyzer::from_pack(const std::string& directory, AnalyzerOptions options) {
  const ModelPack pack = find_model_pack(directory);
  return FaceAnalyzer(pack.detector, pack.recognizer, std::move(options));
}

image::Image FaceAnalyzer::load_image(const std::string& path) const {
  image::Image photo = image::decode_file(path, options_.decode_limits);
  if (photo.channels == 1) {  // gray photos (old LFW copies) go through the RGB pipeline
    image::Image rgb(photo.width, photo.height, 3);
    for (size_t i = 0; i < photo.pixels.size(); ++i) {
      rgb.pixels[3 * i] = rgb.pixels[3 * i + 1] = rgb.pixels[3 * i + 2] = photo.pixels[i];
    }
    return rgb;
  }
  return photo;
}

Face FaceAnalyzer::face_from(const Detection& detection) const {
  Face face;
  face.detection = detection;
  face.quality.detector_score = detection.score;
  face.quality.face_size = std::min(detection.box.width(), detection.box.height());
  if (detection.has_landmarks) {
    try {
      face.quality.pose = estimate_pose(detection.landmarks);
    } catch (const InputError&) {
      // Degenerate landmarks (a profile, a reflection): no pose, which any pose gate rejects.
      const double nan = std::numeric_limits<double>::quiet_NaN();
      face.quality.pose = {nan, nan, nan};
    }
  }
  face.rejection = quality_rejection(face.quality, options_.quality_gate);
  return face;
}

std::vector<Face> FaceAnalyzer::detect(const image::Image& photo) const {
  return detect_batch({photo}).front();
}

std::vector<std::vector<Face>> FaceAnalyzer::detect_batch(const std::vector<image::Image>& photos) const {
  if (!detector_) throw ConfigError("FaceAnalyzer: no detector loaded");
  std::vector<std::vector<Face>> out;
  for (const auto& detections : detector_->detect_batch(photos)) {
    std::vector<Face> faces;
    for (const auto& d : detections) faces.push_back(face_from(d));
    out.push_back(std::move(faces));
  }
  return out;
}

image::Image FaceAnalyzer::align(const image::Image& photo, const Detection& detection) const {
  if (!detection.has_landmarks) {
    throw InputError("this detector gives no landmarks, so faces cannot be aligned (use SCRFD or YuNet)");
  }
  return align_face(photo, detection.landmarks, crop_width(), crop_height());
}

void FaceAnalyzer::complete(const image::Image& photo, std::vector<Face>& faces) const {
  std::vector<image::Image> crops;
  for (auto& face : faces) {
    face.aligned = align(photo, face.detection);
    face.quality.blur = laplacian_variance(face.aligned);
    face.rejection = quality_rejection(face.quality, options_.quality_gate);
    crops.push_back(face.aligned);
  }
  if (!recognizer_ || crops.empty()) return;
  std::vector<std::vector<float>> embeddings = embed_aligned(crops);
  for (size_t i = 0; i < faces.size(); ++i) faces[i].embedding = std::move(embeddings[i]);
}

std::vector<Face> FaceAnalyzer::analyze(const image::Image& photo) const {
  std::vector<Face> faces = detect(photo);
  complete(photo, faces);
  return faces;
}

Face FaceAnalyzer::analyze_largest(const image::Image& photo, const std::string& name_for_errors) const {
  std::vector<Detection> detections;
  for (const Face& f : detect(photo)) detections.push_back(f.detection);
  std::vector<Face> largest{face_from(largest_face(detections, name_for_errors))};
  complete(photo, largest);
  return std::move(largest.front());
}

std::vector<std::vector<float>> FaceAnalyzer::embed_aligned(const std::vector<image::Image>& crops) const {
  if (!recognizer_) throw ConfigError("FaceAnalyzer: no recognizer loaded");
  std::vector<std::vector<float>> embeddings = recognizer_->embed(crops, options_.flip);
  for (auto& e : embeddings) l2_normalize(e);
  return embeddings;
}

VerifyResult FaceAnalyzer::verify(const image::Image& a, const image::Image& b, float threshold,
                                  const std::string& name_a, const std::string& name_b) const {
  VerifyResult result;
  result.threshold = threshold;
  result.first = analyze_largest(a, name_a);
  result.second = analyze_largest(b, name_b);
  result.similarity = cosine_similarity(result.first.embedding, result.second.embedding);
  result.same = result.similarity >= threshold;
  return result;
}

}  // namespace arcforge::pipeline
