// Our pipeline against the same steps done with third-party tools, on real photos from ../shared:
// - recognizer half: FaceAnalyzer's embeddings (scrfd_500m + paddle_mobilefacenet128, flip off) equal
//   those of the reference chain built here: the analyzer's landmarks -> alignment_transform ->
//   cv::warpAffine (INTER_LINEAR, BORDER_CONSTANT 0) -> BGR (x - 127.5) / 128 NCHW written here ->
//   ONNX Runtime -> L2 normalisation. Cosine >= 0.9999 for every face (the two warps may differ by
//   one grey level, OpenCV blends in fixed point; the two runtimes by float rounding).
// - detector half: ONNX Runtime run on the very tensor our SCRFD detector builds (letterbox +
//   append_planar), its raw outputs decoded with decode_scrfd + unletterbox + NMS, gives the same
//   boxes and landmarks (within 0.05 px) as FaceAnalyzer::detect.
// Skips loudly without ../shared, ONNX Runtime (node + onnxruntime-node) or OpenCV.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

// parity_util.hpp pulls in onnx_builder.hpp and so libonnx's protobuf headers. This binary does not
// link onnx_proto (nothing of it is called here), so it lacks the definitions the ONNX package
// exports to its users: set them as ONNXTargets.cmake does.
#ifndef ONNX_ML
#define ONNX_ML 1
#endif
#ifndef ONNX_NAMESPACE
#define ONNX_NAMESPACE onnx
#endif
#include "../runtime/parity_util.hpp"
#include "arcforge/pipeline/alignment.hpp"
#include "arcforge/pipeline/detection.hpp"
#include "arcforge/pipeline/detector.hpp"
#include "arcforge/pipeline/face_analyzer.hpp"
#include "arcforge/pipeline/recognizer.hpp"
#include "shared_data.hpp"

#ifdef ARCFORGE_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace ap = arcforge::pipeline;
namespace ai = arcforge::image;
namespace rt = arcforge::runtime;
using arcforge::pipeline::test::shared_face;
using arcforge::pipeline::test::shared_model;

namespace {

// Ten photos: single portraits of several identities, a mirrored one, a couple and a crowd selfie
// (many small faces), so the comparison sees several faces per photo and a range of face sizes.
const std::vector<std::string> kPhotos = {"couple.jpg", "selfie-many-people.jpg", "img1.jpg", "img3.jpg",
                                          "img11_reflection.jpg", "img17.jpg", "img22.jpg", "img30.jpg",
                                          "img41.jpg", "img55.jpg"};
constexpr int kOrtThreads = 2;

const std::string kDetector = "scrfd_500m_bnkps.onnx";
const std::string kRecognizer = "paddle_mobilefacenet128.onnx";

ap::AnalyzerOptions analyzer_options() {
  ap::AnalyzerOptions options;
  options.runtime.threads = 2;
  options.recognizer_spec = ap::parse_preprocess_spec("bgr,mean=127.5,std=128");
  options.flip = false;
  return options;
}

// Skips unless the photos, both models and ONNX Runtime are here.
#define REQUIRE_REFERENCE_TOOLS()                                                       \
  do {                                                                                  \
    REQUIRE_SHARED(shared_model(kDetector));                                            \
    REQUIRE_SHARED(shared_model(kRecognizer));                                          \
    for (const auto& name : kPhotos) REQUIRE_SHARED(shared_face("deepface/" + name));   \
    const std::string why = arcforge::test::ort_unavailable_reason();                   \
    if (!why.empty()) GTEST_SKIP() << "SKIPPED: ONNX Runtime reference unavailable: " << why; \
  } while (0)

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return dot / std::sqrt(na * nb);
}

// ------------------------------------------------------------------- detector half ---------------

// ORT's outputs for one image of the batch, grouped the way SCRFD lays them out: per stride
// (finest first, i.e. most rows first) one score [K,1], bbox [K,4] and kps [K,10] tensor.
std::vector<ap::StrideOutputs> scrfd_strides(const std::vector<rt::Tensor>& outputs, int64_t image, int size,
                                             int& anchors) {
  std::map<int64_t, std::vector<const rt::Tensor*>> by_channels;
  for (const auto& t : outputs) by_channels[t.shape.back()].push_back(&t);
  for (auto& [channels, group] : by_channels) {
    std::stable_sort(group.begin(), group.end(), [](const rt::Tensor* a, const rt::Tensor* b) {
      return a->shape[a->shape.size() - 2] > b->shape[b->shape.size() - 2];
    });
  }
  EXPECT_EQ(by_channels[1].size(), 3u);
  EXPECT_EQ(by_channels[4].size(), 3u);
  EXPECT_EQ(by_channels[10].size(), 3u);
  std::vector<ap::StrideOutputs> strides;
  for (size_t i = 0; i < 3; ++i) {
    const int stride = 8 << i;
    const int64_t rows = by_channels[1][i]->shape[1];  // [N, K, C]
    const int64_t cells = static_cast<int64_t>(size / stride) * (size / stride);
    anchors = static_cast<int>(rows / cells);
    auto at = [&](int64_t channels) { return by_channels[channels][i]->data.data() + image * rows * channels; };
    strides.push_back({stride, at(1), nullptr, at(4), at(10)});
  }
  return strides;
}

float max_corner_distance(const ap::Detection& a, const ap::Detection& b) {
  return std::max({std::abs(a.box.x1 - b.box.x1), std::abs(a.box.y1 - b.box.y1), std::abs(a.box.x2 - b.box.x2),
                   std::abs(a.box.y2 - b.box.y2)});
}

float max_landmark_distance(const ap::Detection& a, const ap::Detection& b) {
  float d = 0;
  for (size_t k = 0; k < 5; ++k) {
    d = std::max({d, std::abs(a.landmarks[k].x - b.landmarks[k].x), std::abs(a.landmarks[k].y - b.landmarks[k].y)});
  }
  return d;
}

TEST(ReferenceParity, DetectorMatchesOnnxRuntimeOnTheSameInputTensor) {
  REQUIRE_REFERENCE_TOOLS();
  const ap::FaceAnalyzer analyzer(shared_model(kDetector), "", analyzer_options());
  const ap::DetectorOptions& det = analyzer.options().detector;
  ASSERT_EQ(det.input_width, det.input_height);
  const int size = det.input_width;

  std::vector<ai::Image> photos;
  std::vector<float> scales;
  rt::Tensor batch;
  batch.shape = {static_cast<int64_t>(kPhotos.size()), 3, size, size};
  for (const auto& name : kPhotos) {
    photos.push_back(analyzer.load_image(shared_face("deepface/" + name)));
    const ap::Letterbox lb = ap::letterbox(photos.back(), size, size);
    ap::append_planar(lb.canvas, /*bgr=*/false, 127.5f, 128.0f, batch.data);
    scales.push_back(lb.scale);
  }
  const std::vector<rt::Tensor> outputs =
      arcforge::test::run_onnxruntime(shared_model(kDetector), {batch}, kOrtThreads);
  ASSERT_EQ(outputs.size(), 9u);

  int total_faces = 0;
  float worst_box = 0, worst_landmark = 0, worst_score = 0;
  for (size_t p = 0; p < photos.size(); ++p) {
    SCOPED_TRACE(kPhotos[p]);
    int anchors = 0;
    const auto strides = scrfd_strides(outputs, static_cast<int64_t>(p), size, anchors);
    ASSERT_EQ(anchors, 2);
    std::vector<ap::Detection> reference = ap::decode_scrfd(strides, size, size, anchors, det.score_threshold);
    ap::unletterbox(reference, scales[p]);
    reference = ap::non_maximum_suppression(std::move(reference), det.nms_iou);

    const std::vector<ap::Face> ours = analyzer.detect(photos[p]);
    ASSERT_EQ(ours.size(), reference.size());
    ASSERT_FALSE(ours.empty()) << "no face found, the photo tests nothing";
    total_faces += static_cast<int>(ours.size());
    std::printf("[ detector ] %s: %zu faces\n", kPhotos[p].c_str(), ours.size());
    // Pair each reference face with our nearest one (order may differ between near-equal scores).
    std::vector<bool> used(ours.size(), false);
    for (const auto& ref : reference) {
      size_t best = ours.size();
      float best_d = std::numeric_limits<float>::infinity();
      for (size_t i = 0; i < ours.size(); ++i) {
        const float d = max_corner_distance(ours[i].detection, ref);
        if (!used[i] && d < best_d) best = i, best_d = d;
      }
      ASSERT_LT(best, ours.size());
      used[best] = true;
      const ap::Detection& mine = ours[best].detection;
      ASSERT_TRUE(mine.has_landmarks);
      const float dl = max_landmark_distance(mine, ref);
      EXPECT_LE(best_d, 0.05f) << "box differs from ONNX Runtime's";
      EXPECT_LE(dl, 0.05f) << "landmarks differ from ONNX Runtime's";
      EXPECT_NEAR(mine.score, ref.score, 1e-3f);
      worst_box = std::max(worst_box, best_d);
      worst_landmark = std::max(worst_landmark, dl);
      worst_score = std::max(worst_score, std::abs(mine.score - ref.score));
    }
  }
  std::printf("[ detector ] %zu photos, %d faces: max box corner diff %.5f px, max landmark diff %.5f px, "
              "max score diff %.2e\n",
              photos.size(), total_faces, worst_box, worst_landmark, worst_score);
  EXPECT_GE(total_faces, 12);  // the couple and the crowd add several faces each
}

// ------------------------------------------------------------------- recognizer half -------------

#ifdef ARCFORGE_HAVE_OPENCV

// The reference crop: OpenCV's warpAffine of the photo with the matrix alignment_transform gives.
cv::Mat opencv_aligned(const ai::Image& photo, const ap::Landmarks5& landmarks) {
  const ap::Affine2x3 transform = ap::alignment_transform(landmarks, 112, 112);
  cv::Mat matrix(2, 3, CV_64F);
  for (int i = 0; i < 6; ++i) matrix.at<double>(i / 3, i % 3) = transform.m[static_cast<size_t>(i)];
  const cv::Mat src(photo.height, photo.width, CV_8UC3, const_cast<uint8_t*>(photo.pixels.data()));
  cv::Mat out;
  cv::warpAffine(src, out, matrix, cv::Size(112, 112), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  return out;
}

// The paddle MobileFaceNet input, written out here: planes B, G, R of (x - 127.5) / 128.
void append_bgr_nchw(const cv::Mat& rgb, std::vector<float>& out) {
  for (int plane = 0; plane < 3; ++plane) {
    const int channel = 2 - plane;  // the Mat holds RGB
    for (int y = 0; y < rgb.rows; ++y) {
      const uint8_t* row = rgb.ptr<uint8_t>(y);
      for (int x = 0; x < rgb.cols; ++x) out.push_back((static_cast<float>(row[3 * x + channel]) - 127.5f) / 128.0f);
    }
  }
}

TEST(ReferenceParity, EmbeddingsMatchOnnxRuntimeAfterOpenCvAlignment) {
  REQUIRE_REFERENCE_TOOLS();
  const ap::FaceAnalyzer analyzer(shared_model(kDetector), shared_model(kRecognizer), analyzer_options());
  ASSERT_EQ(analyzer.crop_width(), 112);
  ASSERT_EQ(analyzer.crop_height(), 112);

  std::vector<std::vector<float>> ours;
  std::vector<std::string> names;
  rt::Tensor batch;
  for (const auto& name : kPhotos) {
    const ai::Image photo = analyzer.load_image(shared_face("deepface/" + name));
    ASSERT_EQ(photo.channels, 3);
    const std::vector<ap::Face> faces = analyzer.analyze(photo);
    ASSERT_FALSE(faces.empty()) << name << ": no face found, the photo tests nothing";
    for (size_t i = 0; i < faces.size(); ++i) {
      ASSERT_EQ(faces[i].embedding.size(), 128u);
      ours.push_back(faces[i].embedding);
      names.push_back(name + " face " + std::to_string(i));
      append_bgr_nchw(opencv_aligned(photo, faces[i].detection.landmarks), batch.data);
    }
  }
  batch.shape = {static_cast<int64_t>(ours.size()), 3, 112, 112};
  const std::vector<rt::Tensor> outputs =
      arcforge::test::run_onnxruntime(shared_model(kRecognizer), {batch}, kOrtThreads);
  ASSERT_EQ(outputs.size(), 1u);
  ASSERT_EQ(outputs[0].shape, (std::vector<int64_t>{static_cast<int64_t>(ours.size()), 128}));

  double min_cos = 1;
  std::string worst;
  for (size_t f = 0; f < ours.size(); ++f) {
    std::vector<float> reference(outputs[0].data.begin() + static_cast<std::ptrdiff_t>(f * 128),
                                 outputs[0].data.begin() + static_cast<std::ptrdiff_t>((f + 1) * 128));
    ap::l2_normalize(reference);
    const double c = cosine(ours[f], reference);
    EXPECT_GE(c, 0.9999) << names[f];
    if (c < min_cos) min_cos = c, worst = names[f];
  }
  std::printf("[ recognizer ] %zu photos, %zu faces: min cosine to ONNX Runtime + OpenCV %.8f (1 - cos = %.2e, %s)\n",
              kPhotos.size(), ours.size(), min_cos, 1 - min_cos, worst.c_str());
  EXPECT_GE(ours.size(), 12u);
}

#else

TEST(ReferenceParity, EmbeddingsMatchOnnxRuntimeAfterOpenCvAlignment) {
  GTEST_SKIP() << "SKIPPED: OpenCV (core + imgproc) was not found at configure time; the reference warp is unavailable";
}

#endif

}  // namespace
