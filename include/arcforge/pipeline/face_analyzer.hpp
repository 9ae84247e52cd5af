#pragma once
// FaceAnalyzer: the whole pipeline behind one object: decode, detect, align, embed, quality, verify.
//
//   using namespace arcforge::pipeline;
//   AnalyzerOptions options;
//   options.runtime.threads = 2;
//   FaceAnalyzer analyzer = FaceAnalyzer::from_pack("models/buffalo_s", options);
//   std::vector<Face> faces = analyzer.analyze(analyzer.load_image("group.jpg"));
//   VerifyResult r = analyzer.verify_files("a.jpg", "b.jpg");   // r.similarity, r.same
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

  image::Image load_image(const std::string& path) const;

  // All faces, highest score first, with quality signals (blur needs the aligned crop, so detect()
  // leaves it 0; analyze() fills it).
  std::vector<Face> detect(const image::Image& photo) const;
  std::vector<std::vector<Face>> detect_batch(const std::vector<image::Image>& photos) const;
  // The aligned crop (recognizer input size, or 112x112 without a recognizer).
  image::Image align(const image::Image& photo, const Detection& detection) const;
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

  const Detector* detector() const { return detector_.get(); }
  const Recognizer* recognizer() const { return recognizer_ ? &*recognizer_ : nullptr; }
  const AnalyzerOptions& options() const { return options_; }
  int crop_width() const { return recognizer_ ? recognizer_->spec().width : 112; }
  int crop_height() const { return recognizer_ ? recognizer_->spec().height : 112; }

 private:
  Face face_from(const Detection& detection) const;
  AnalyzerOptions options_;
  std::shared_ptr<const Detector> detector_;
  std::optional<Recognizer> recognizer_;
};

}  // namespace arcforge::pipeline
