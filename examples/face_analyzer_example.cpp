// The FaceAnalyzer API in one program: detect every face of a photo, then verify two photos.
//
//   face_analyzer_example DETECTOR.onnx RECOGNIZER.onnx SPEC PHOTO_A PHOTO_B
//   e.g. face_analyzer_example scrfd_500m_bnkps.onnx paddle_mobilefacenet128.onnx
//          bgr,mean=127.5,std=128 img1.jpg img2.jpg   (one line)
// SPEC is the recognizer's preprocessing ("" = the model's sidecar, else InsightFace's default).
#include <cstdio>
#include <exception>

#include "arcforge/pipeline/face_analyzer.hpp"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s DETECTOR.onnx RECOGNIZER.onnx SPEC PHOTO_A PHOTO_B\n", argv[0]);
    return 2;
  }
  try {
    using namespace arcforge::pipeline;
    AnalyzerOptions options;
    options.runtime.threads = 2;  // runtime threads per call; the analyzer itself is thread-safe
    if (argv[3][0] != '\0') options.recognizer_spec = parse_preprocess_spec(argv[3]);
    options.flip = true;  // flip-add embeddings
    const FaceAnalyzer analyzer(argv[1], argv[2], options);

    // Every face of photo A: box, score, landmarks, quality, a 112x112 crop and an embedding. A large
    // JPEG is decoded reduced; coordinates are the file's full-size pixels all the same.
    const Photo photo = analyzer.load_photo(argv[4]);
    for (const Face& face : analyzer.analyze(photo)) {
      const Box& b = face.detection.box;
      std::printf("face [%.0f %.0f %.0f %.0f] score %.3f yaw %.1f blur %.0f, %zu-d embedding\n", b.x1, b.y1, b.x2,
                  b.y2, face.detection.score, face.quality.pose.yaw, face.quality.blur, face.embedding.size());
    }

    // The largest faces of A and B compared at a cosine threshold.
    const VerifyResult r = analyzer.verify(photo, analyzer.load_photo(argv[5]), 0.29f);
    std::printf("similarity %.4f -> %s\n", r.similarity, r.same ? "same person" : "different people");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
