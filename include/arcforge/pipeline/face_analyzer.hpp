#pragma once
// FaceAnalyzer: the whole pipeline behind one object: decode, detect, align, embed, quality, verify.
//
//   using namespace arcforge::pipeline;
//   AnalyzerOptions options;
//   options.runtime.threads = 2;
//   FaceAnalyzer analyzer = FaceAnalyzer::from_pack("models/buffalo_s", options);
//   std::vector<Face> faces = analyzer.analyze(analyzer.load_photo("group.jpg"));
//   VerifyResult r = analyzer.verify(analyzer.load_photo("a.jpg"), analyzer.load_photo("b.jpg"), 0.3f);
//
// Photos from files (load_photo, decode_photo) may be decoded reduced (see photo.hpp); faces found
// on a Photo are in the file's full-size coordinates. The image::Image overloads take the pixels
// as they are.
//
// A FaceAnalyzer is immutable after construction and safe to share between threads (the runtime's
// Model::run is).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arcforge/image/codec.hpp"
#include "arcforge/pipeline/alignment.hpp"
#include "arcforge/pipeline/detector.hpp"
#include "arcforge/pipeline/photo.hpp"
#include "arcforge/pipeline/quality.hpp"
#include "arcforge/pipeline/recognizer.hpp"

namespace arcforge::pipeline {

struct AnalyzerOptions {
  DetectorOptions detector;
  runtime::Options runtime;
  // The detector's own runtime options when they differ (e.g. an int8 recognizer next to an fp32
  // detector); empty: `runtime`.
  std::optional<runtime::Options> detector_runtime;
  std::optional<PreprocessSpec> recognizer_spec;  // default: the sidecar, else InsightFace's
  bool flip = false;                 // flip-add embeddings
  QualityGate quality_gate;          // faces failing it are marked (Face::rejection), not dropped
  // Decoding cap: photos above it are refused before their pixels are decoded.
  image::DecodeLimits decode_limits{40'000'000, 64ull << 20};
  // JPEGs much larger than the detector input are decoded reduced, and again sharper for a face
  // that needs it (photo.hpp); false: always at full size.
  bool reduced_decoding = true;
  // JPEGs and PNGs are turned upright as their EXIF orientation says, as cv2.imread does; false:
  // as stored.
  bool apply_exif_orientation = true;
};

struct Face {
  Detection detection;
  FaceQuality quality;
  std::string rejection;            // empty when the face passes the quality gate
  image::Image aligned;             // empty unless aligned
  std::vector<float> embedding;     // L2-normalised; empty unless embedded
};

// A folder holding a detector and a recognizer ONNX, recognised by their input/output shapes
// (InsightFace's buffalo_l: det_10g.onnx + w600k_r50.onnx + models arcforge does not use, which are
// ignored). Throws InputError naming the folder when either is missing or ambiguous.
struct ModelPack {
  std::string detector;
  std::string recognizer;
};
ModelPack find_model_pack(const std::string& directory);

struct VerifyResult {
  float similarity = 0;
  bool same = false;
  float threshold = 0;
  Face first, second;
};

class FaceAnalyzer {
 public:
  // Either path may be empty: a detector-only analyzer cannot embed, a recognizer-only one takes
  // aligned crops (embed_aligned).
  FaceAnalyzer(const std::string& detector_path, const std::string& recognizer_path, AnalyzerOptions options = {});
  static FaceAnalyzer from_pack(const std::string& directory, AnalyzerOptions options = {});

  // The file decoded to RGB at full size, as stored (no EXIF orientation).
  image::Image load_image(const std::string& path) const;
  // The file (or encoded bytes) decoded to RGB, reduced where options().reduced_decoding allows it
  // and `allow_reduced` is true (drawing on a photo needs it whole); the Photo keeps the bytes.
  // decode_photo does not refuse bytes over decode_limits.max_bytes (they are in memory already).
  // Throws InputError naming the file.
  Photo load_photo(const std::string& path, bool allow_reduced = true) const;
  Photo decode_photo(std::string encoded, const std::string& name, bool allow_reduced = true) const;

  // All faces, highest score first, with quality signals (blur needs the aligned crop, so detect()
  // leaves it 0; analyze() fills it).
  std::vector<Face> detect(const image::Image& photo) const;
  std::vector<std::vector<Face>> detect_batch(const std::vector<image::Image>& photos) const;
  // The aligned crop (recognizer input size, or 112x112 without a recognizer).
  image::Image align(const image::Image& photo, const Detection& detection) const;
  // A crop of any size from a Photo, decoding the file again when the reduced pixels are too
  // coarse for it.
  image::Image align(const Photo& photo, const Detection& detection, int width, int height) const;
  // Detect, align, embed and grade every face.
  std::vector<Face> analyze(const image::Image& photo) const;
  // The largest face of a photo, complete (embedded, graded): what verify, enrolment and search
  // take from a photo. Throws InputError "<name>: no face found" when there is none.
  Face analyze_largest(const image::Image& photo, const std::string& name_for_errors) const;
  // Adds aligned crops, blur and embeddings to faces found by detect().
  void complete(const image::Image& photo, std::vector<Face>& faces) const;
  // Embeddings of aligned crops, L2-normalised.
  std::vector<std::vector<float>> embed_aligned(const std::vector<image::Image>& crops) const;
  // The largest face of each photo, compared. Throws InputError naming the photo without a face.
  VerifyResult verify(const image::Image& a, const image::Image& b, float threshold, const std::string& name_a = "first",
                      const std::string& name_b = "second") const;

  // The same on photos from files: detections in full-size coordinates, crops from pixels that
  // hold at least one pixel per crop pixel.
  std::vector<Face> detect(const Photo& photo) const;
  void complete(const Photo& photo, std::vector<Face>& faces) const;
  std::vector<Face> analyze(const Photo& photo) const;
  Face analyze_largest(const Photo& photo) const;
  VerifyResult verify(const Photo& a, const Photo& b, float threshold) const;

  const Detector* detector() const { return detector_.get(); }
  const Recognizer* recognizer() const { return recognizer_ ? &*recognizer_ : nullptr; }
  const AnalyzerOptions& options() const { return options_; }
  int crop_width() const { return recognizer_ ? recognizer_->spec().width : 112; }
  int crop_height() const { return recognizer_ ? recognizer_->spec().height : 112; }

 private:
  Face face_from(const Detection& detection) const;
  // Detections on `photo.pixels` -> faces in full-size coordinates, selected (min_face_size,
  // max_faces) there: the detector itself is loaded with selection off.
  std::vector<Face> faces_from(std::vector<Detection> detections, const PhotoGeometry& geometry) const;
  // The file decoded again, finely enough for every detection's width x height crop, when the
  // photo's own pixels are too coarse for one of them; nullopt when they will do.
  std::optional<Photo> finer_decode(const Photo& photo, const std::vector<Detection>& detections, int width,
                                    int height) const;
  Face largest(const std::vector<Face>& faces, const std::string& name_for_errors) const;
  // complete() on pixels placed by `geometry` on the faces' coordinates.
  void complete_on(const image::Image& pixels, const PhotoGeometry& geometry, std::vector<Face>& faces) const;
  AnalyzerOptions options_;
  std::shared_ptr<const Detector> detector_;
  std::optional<Recognizer> recognizer_;
};

}  // namespace arcforge::pipeline
