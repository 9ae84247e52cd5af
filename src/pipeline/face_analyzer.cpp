// FaceAnalyzer: detector + alignment + recognizer + quality, glued the way InsightFace's
// FaceAnalysis is.
#include "arcforge/pipeline/face_analyzer.hpp"

#include <algorithm>
#include <limits>

#include "arcforge/common/error.hpp"
#include "arcforge/image/orientation.hpp"

namespace arcforge::pipeline {

FaceAnalyzer::FaceAnalyzer(const std::string& detector_path, const std::string& recognizer_path,
                           AnalyzerOptions options)
    : options_(std::move(options)) {
  if (detector_path.empty() && recognizer_path.empty()) {
    throw ConfigError("FaceAnalyzer: give a detector, a recognizer, or both");
  }
  if (!detector_path.empty()) {
    // Faces are selected in full-size coordinates (faces_from), where min_face_size means what it says.
    DetectorOptions unselected = options_.detector;
    unselected.min_face_size = 0;
    unselected.max_faces = 0;
    detector_ = load_detector(detector_path, unselected, options_.detector_runtime.value_or(options_.runtime));
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
  return image::decode_file(path, options_.decode_limits);  // RGB whatever the file, gray included
}

Photo FaceAnalyzer::load_photo(const std::string& path, bool allow_reduced) const {
  return decode_photo(image::read_image_file(path, options_.decode_limits), path, allow_reduced);
}

Photo FaceAnalyzer::decode_photo(std::string encoded, const std::string& name, bool allow_reduced) const {
  const std::optional<image::ImageSize> jpeg = image::jpeg_size(encoded, name);
  int eighths = 8;
  if (jpeg && allow_reduced && options_.reduced_decoding && detector_) {
    eighths = detection_eighths(jpeg->width, jpeg->height, detector_->input_width(), detector_->input_height());
  }
  const int orientation = options_.apply_exif_orientation ? image::exif_orientation(encoded) : 1;
  // Bytes already in memory are not refused for their size (max_bytes guards reading a file).
  image::DecodeLimits limits = options_.decode_limits;
  limits.max_bytes = std::max<uint64_t>(limits.max_bytes, encoded.size());
  return Photo::decode(std::make_shared<const std::string>(std::move(encoded)), name, eighths, orientation, limits);
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
  std::vector<std::vector<Detection>> found = detector_->detect_batch(photos);
  for (size_t i = 0; i < photos.size(); ++i) {
    out.push_back(faces_from(std::move(found[i]), PhotoGeometry{photos[i].width, photos[i].height}));
  }
  return out;
}

std::vector<Face> FaceAnalyzer::faces_from(std::vector<Detection> detections, const PhotoGeometry& geometry) const {
  if (geometry.reduced()) {
    for (Detection& d : detections) {
      const Point2 top_left = geometry.to_full({d.box.x1, d.box.y1});
      const Point2 bottom_right = geometry.to_full({d.box.x2, d.box.y2});
      d.box = {top_left.x, top_left.y, bottom_right.x, bottom_right.y};
      for (Point2& p : d.landmarks) p = geometry.to_full(p);
    }
  }
  std::vector<Face> faces;
  for (const Detection& d :
       select_faces(std::move(detections), options_.detector, geometry.full_width, geometry.full_height)) {
    faces.push_back(face_from(d));
  }
  return faces;
}

std::vector<Face> FaceAnalyzer::detect(const Photo& photo) const {
  if (!detector_) throw ConfigError("FaceAnalyzer: no detector loaded");
  return faces_from(detector_->detect(photo.pixels), photo);
}

image::Image FaceAnalyzer::align(const image::Image& photo, const Detection& detection) const {
  if (!detection.has_landmarks) {
    throw InputError("this detector gives no landmarks, so faces cannot be aligned (use SCRFD or YuNet)");
  }
  return align_face(photo, detection.landmarks, crop_width(), crop_height());
}

image::Image FaceAnalyzer::align(const Photo& photo, const Detection& detection, int width, int height) const {
  if (!detection.has_landmarks) {
    throw InputError("this detector gives no landmarks, so faces cannot be aligned (use SCRFD or YuNet)");
  }
  const std::optional<Photo> finer = finer_decode(photo, {detection}, width, height);
  const Photo& source = finer ? *finer : photo;
  Landmarks5 landmarks = detection.landmarks;
  for (Point2& p : landmarks) p = source.to_pixels(p);
  return align_face(source.pixels, landmarks, width, height);
}

std::optional<Photo> FaceAnalyzer::finer_decode(const Photo& photo, const std::vector<Detection>& detections, int width,
                                                int height) const {
  if (!photo.reduced() || !photo.encoded) return std::nullopt;
  int needed = photo.eighths;
  for (const Detection& d : detections) {
    if (!d.has_landmarks) continue;
    try {
      needed = std::max(needed, alignment_eighths(alignment_transform(d.landmarks, width, height)));
    } catch (const InputError&) {
      // Degenerate landmarks: align() reports them.
    }
  }
  if (needed == photo.eighths) return std::nullopt;
  image::DecodeLimits limits = options_.decode_limits;
  limits.max_bytes = std::max<uint64_t>(limits.max_bytes, photo.encoded->size());  // decoded once already
  return Photo::decode(photo.encoded, photo.name, needed, photo.orientation, limits);
}

void FaceAnalyzer::complete(const Photo& photo, std::vector<Face>& faces) const {
  std::vector<Detection> detections;
  for (const Face& face : faces) detections.push_back(face.detection);
  const std::optional<Photo> finer = finer_decode(photo, detections, crop_width(), crop_height());
  const Photo& source = finer ? *finer : photo;
  complete_on(source.pixels, source, faces);
}

void FaceAnalyzer::complete_on(const image::Image& pixels, const PhotoGeometry& geometry,
                               std::vector<Face>& faces) const {
  std::vector<image::Image> crops;
  for (auto& face : faces) {
    Detection on_pixels = face.detection;
    for (Point2& p : on_pixels.landmarks) p = geometry.to_pixels(p);
    face.aligned = align(pixels, on_pixels);
    face.quality.blur = laplacian_variance(face.aligned);
    face.rejection = quality_rejection(face.quality, options_.quality_gate);
    crops.push_back(face.aligned);
  }
  if (!recognizer_ || crops.empty()) return;
  std::vector<std::vector<float>> embeddings = embed_aligned(crops);
  for (size_t i = 0; i < faces.size(); ++i) faces[i].embedding = std::move(embeddings[i]);
}

std::vector<Face> FaceAnalyzer::analyze(const Photo& photo) const {
  std::vector<Face> faces = detect(photo);
  complete(photo, faces);
  return faces;
}

Face FaceAnalyzer::analyze_largest(const Photo& photo) const {
  std::vector<Face> largest{this->largest(detect(photo), photo.name)};
  complete(photo, largest);
  return std::move(largest.front());
}

Face FaceAnalyzer::largest(const std::vector<Face>& faces, const std::string& name_for_errors) const {
  std::vector<Detection> detections;
  for (const Face& f : faces) detections.push_back(f.detection);
  return face_from(largest_face(detections, name_for_errors));
}

VerifyResult FaceAnalyzer::verify(const Photo& a, const Photo& b, float threshold) const {
  VerifyResult result;
  result.threshold = threshold;
  result.first = analyze_largest(a);
  result.second = analyze_largest(b);
  result.similarity = cosine_similarity(result.first.embedding, result.second.embedding);
  result.same = result.similarity >= threshold;
  return result;
}

void FaceAnalyzer::complete(const image::Image& photo, std::vector<Face>& faces) const {
  complete_on(photo, PhotoGeometry{photo.width, photo.height}, faces);
}

std::vector<Face> FaceAnalyzer::analyze(const image::Image& photo) const {
  std::vector<Face> faces = detect(photo);
  complete(photo, faces);
  return faces;
}

Face FaceAnalyzer::analyze_largest(const image::Image& photo, const std::string& name_for_errors) const {
  std::vector<Face> largest{this->largest(detect(photo), name_for_errors)};
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
