// Detection post-processing against hand-computed references, and the three detector families on
// real photos of ../shared.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/pipeline/detector.hpp"
#include "arcforge/pipeline/face_analyzer.hpp"
#include "shared_data.hpp"

namespace ap = arcforge::pipeline;
using arcforge::pipeline::test::shared_face;
using arcforge::pipeline::test::shared_model;

namespace {

ap::Detection box(float x1, float y1, float x2, float y2, float score) {
  ap::Detection d;
  d.box = {x1, y1, x2, y2};
  d.score = score;
  return d;
}

// InsightFace's nms() restated in the most direct way, to compare with.
double pixel_iou(const ap::Box& a, const ap::Box& b) {
  const double w = std::max(0.0, std::min<double>(a.x2, b.x2) - std::max<double>(a.x1, b.x1) + 1);
  const double h = std::max(0.0, std::min<double>(a.y2, b.y2) - std::max<double>(a.y1, b.y1) + 1);
  const double area_a = (a.x2 - a.x1 + 1.0) * (a.y2 - a.y1 + 1.0), area_b = (b.x2 - b.x1 + 1.0) * (b.y2 - b.y1 + 1.0);
  return w * h / (area_a + area_b - w * h);
}

}  // namespace

TEST(Nms, KeepsHighestAndDropsOverlapsAboveThreshold) {
  // b overlaps a heavily, c overlaps a exactly at the threshold (kept: InsightFace keeps ovr <= t),
  // d is far away.
  std::vector<ap::Detection> in{box(0, 0, 9, 9, 0.8f), box(1, 0, 10, 9, 0.9f), box(100, 100, 120, 120, 0.7f)};
  auto kept = ap::non_maximum_suppression(in, 0.4f);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_FLOAT_EQ(kept[0].score, 0.9f);
  EXPECT_FLOAT_EQ(kept[1].score, 0.7f);
  // IoU with pixel-inclusive areas: boxes [0,9] and [5,14] (10 px each, 5 shared) -> 50/150 = 1/3.
  ap::Box a{0, 0, 9, 9}, b{5, 0, 14, 9};
  EXPECT_NEAR(pixel_iou(a, b), 1.0 / 3.0, 1e-12);
  EXPECT_EQ(ap::non_maximum_suppression({box(0, 0, 9, 9, 0.9f), box(5, 0, 14, 9, 0.8f)}, 0.34f).size(), 2u);
  EXPECT_EQ(ap::non_maximum_suppression({box(0, 0, 9, 9, 0.9f), box(5, 0, 14, 9, 0.8f)}, 0.33f).size(), 1u);
}

TEST(Nms, MatchesDirectReferenceOnRandomBoxes) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> pos(0, 200), size(5, 60), score(0, 1);
  std::vector<ap::Detection> in;
  for (int i = 0; i < 300; ++i) {
    const float x = pos(rng), y = pos(rng);
    in.push_back(box(x, y, x + size(rng), y + size(rng), score(rng)));
  }
  // Reference: repeatedly take the best remaining, drop everything overlapping it by more than t.
  std::vector<ap::Detection> rest = in, expected;
  while (!rest.empty()) {
    auto best = std::max_element(rest.begin(), rest.end(), [](auto& a, auto& b) { return a.score < b.score; });
    const ap::Detection keep = *best;
    expected.push_back(keep);
    std::erase_if(rest, [&](const ap::Detection& d) { return &d == &*best || pixel_iou(keep.box, d.box) > 0.4; });
    std::erase_if(rest, [&](const ap::Detection& d) { return d.score == keep.score && d.box.x1 == keep.box.x1; });
  }
  auto kept = ap::non_maximum_suppression(in, 0.4f);
  ASSERT_EQ(kept.size(), expected.size());
  for (size_t i = 0; i < kept.size(); ++i) EXPECT_EQ(kept[i].score, expected[i].score);
}

TEST(SelectFaces, MaxFacesPrefersLargeCentralAndMinSizeDrops) {
  // Photo 200x100: a central 40x40 face, a bigger 50x50 face in the corner, a small 10x10 one.
  std::vector<ap::Detection> in{box(80, 30, 120, 70, 0.6f), box(0, 0, 50, 50, 0.9f), box(95, 45, 105, 55, 0.95f)};
  ap::DetectorOptions o;
  o.max_faces = 1;
  auto one = ap::select_faces(in, o, 200, 100);
  ASSERT_EQ(one.size(), 1u);
  // values: central 1600 - 0 = 1600; corner 2500 - 2*(75^2 + 25^2) = -10000; small 100.
  EXPECT_FLOAT_EQ(one[0].box.x1, 80);
  o.max_faces = 0;
  o.min_face_size = 20;
  auto big = ap::select_faces(in, o, 200, 100);
  EXPECT_EQ(big.size(), 2u);
  EXPECT_THROW(ap::largest_face({}, "x.jpg"), arcforge::InputError);
  EXPECT_FLOAT_EQ(ap::largest_face(in, "x").box.x1, 0);
}

TEST(Letterbox, KeepsAspectAndPadsBottomRight) {
  arcforge::image::Image photo(400, 200, 3);
  std::fill(photo.pixels.begin(), photo.pixels.end(), 200);
  ap::Letterbox lb = ap::letterbox(photo, 640, 640);
  EXPECT_FLOAT_EQ(lb.scale, 320.0f / 200.0f);  // new size 640x320
  EXPECT_EQ(lb.canvas.at(639, 319, 0), 200);
  EXPECT_EQ(lb.canvas.at(639, 320, 0), 0);
  EXPECT_EQ(lb.canvas.at(0, 639, 2), 0);
  // Tall photo: height fills, width = int(640 / ratio).
  arcforge::image::Image tall(300, 1000, 3);
  ap::Letterbox lt = ap::letterbox(tall, 640, 640);
  EXPECT_FLOAT_EQ(lt.scale, 640.0f / 1000.0f);
  std::vector<ap::Detection> d{box(64, 64, 128, 128, 1)};
  d[0].landmarks[0] = {64, 64};
  ap::unletterbox(d, lt.scale);
  EXPECT_FLOAT_EQ(d[0].box.x2, 200);
  EXPECT_FLOAT_EQ(d[0].landmarks[0].x, 100);
}

TEST(AppendPlanar, NormalisedPlanesInRgbOrBgrOrderAppendedToABatch) {
  // A 5 x 3 photo of distinct values: each plane against (pixel - mean) / std in double precision.
  arcforge::image::Image photo(5, 3, 3);
  for (size_t i = 0; i < photo.pixels.size(); ++i) photo.pixels[i] = static_cast<uint8_t>(7 + 16 * i % 251);
  for (const bool bgr : {false, true}) {
    std::vector<float> batch{42.0f};  // something already there stays, the planes follow it
    ap::append_planar(photo, bgr, 127.5f, 128.0f, batch);
    ap::append_planar(photo, bgr, 127.5f, 128.0f, batch);  // a batch of two
    ASSERT_EQ(batch.size(), 1u + 2 * 3 * 15);
    EXPECT_EQ(batch[0], 42.0f);
    for (int image = 0; image < 2; ++image) {
      for (int plane = 0; plane < 3; ++plane) {
        const int channel = bgr ? 2 - plane : plane;
        for (int y = 0; y < 3; ++y) {
          for (int x = 0; x < 5; ++x) {
            const double expected = (photo.at(x, y, channel) - 127.5) / 128.0;
            EXPECT_NEAR(batch[1 + static_cast<size_t>(image * 45 + plane * 15 + y * 5 + x)], expected, 1e-6)
                << (bgr ? "bgr" : "rgb") << " plane " << plane << " at " << x << "," << y;
          }
        }
      }
    }
  }
}

TEST(DecodeScrfd, AnchorCentresDistancesAndKeypointsInStrideUnits) {
  // Input 64x32, stride 8: grid 8 cols x 4 rows, 2 anchors per cell -> 64 rows; stride 16: 4x2x2 = 16;
  // stride 32: 2x1x2 = 4. One positive at stride 8, cell (col 3, row 2), anchor 1 -> row (2*8+3)*2+1.
  const int w = 64, h = 32;
  std::vector<float> s8(64, 0.1f), b8(64 * 4, 0), k8(64 * 10, 0);
  std::vector<float> s16(16, 0), b16(16 * 4, 0), k16(16 * 10, 0), s32(4, 0), b32(16, 0), k32(40, 0);
  const int k = (2 * 8 + 3) * 2 + 1;
  s8[k] = 0.9f;
  float* bb = &b8[4 * k];
  bb[0] = 1, bb[1] = 2, bb[2] = 3, bb[3] = 4;
  for (int i = 0; i < 10; ++i) k8[10 * k + i] = 0.5f * i;
  std::vector<ap::StrideOutputs> strides{{8, s8.data(), nullptr, b8.data(), k8.data()},
                                         {16, s16.data(), nullptr, b16.data(), k16.data()},
                                         {32, s32.data(), nullptr, b32.data(), k32.data()}};
  auto out = ap::decode_scrfd(strides, w, h, 2, 0.5f);
  ASSERT_EQ(out.size(), 1u);
  const float cx = 3 * 8, cy = 2 * 8;
  EXPECT_FLOAT_EQ(out[0].box.x1, cx - 8);
  EXPECT_FLOAT_EQ(out[0].box.y1, cy - 16);
  EXPECT_FLOAT_EQ(out[0].box.x2, cx + 24);
  EXPECT_FLOAT_EQ(out[0].box.y2, cy + 32);
  EXPECT_TRUE(out[0].has_landmarks);
  EXPECT_FLOAT_EQ(out[0].landmarks[2].x, cx + 0.5f * 4 * 8);
  EXPECT_FLOAT_EQ(out[0].landmarks[2].y, cy + 0.5f * 5 * 8);
  EXPECT_EQ(ap::decode_scrfd(strides, w, h, 2, 0.1f).size(), 64u);  // the threshold is inclusive
  EXPECT_EQ(ap::decode_scrfd(strides, w, h, 2, 0.11f).size(), 1u);
}

TEST(DecodeYunet, ScoreIsGeometricMeanAndBoxesAreCentreSize) {
  const int w = 32, h = 32;  // stride 8: 4x4 = 16 cells; 16: 4; 32: 1
  std::vector<float> c8(16, 0), o8(16, 0), b8(64, 0), k8(160, 0), c16(4, 0), o16(4, 0), b16(16, 0), k16(40, 0);
  std::vector<float> c32(1, 0), o32(1, 0), b32(4, 0), k32(10, 0);
  const int idx = 1 * 4 + 2;  // row 1, col 2
  c8[idx] = 0.81f, o8[idx] = 1.5f;  // obj clamps to 1 -> score 0.9
  b8[4 * idx] = 0.5f, b8[4 * idx + 1] = 0.25f, b8[4 * idx + 2] = std::log(2.0f), b8[4 * idx + 3] = 0;
  k8[10 * idx] = 0.5f, k8[10 * idx + 1] = -0.5f;
  std::vector<ap::StrideOutputs> strides{{8, c8.data(), o8.data(), b8.data(), k8.data()},
                                         {16, c16.data(), o16.data(), b16.data(), k16.data()},
                                         {32, c32.data(), o32.data(), b32.data(), k32.data()}};
  auto out = ap::decode_yunet(strides, w, h, 0.5f);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_NEAR(out[0].score, 0.9f, 1e-6);
  const float cx = (2 + 0.5f) * 8, cy = (1 + 0.25f) * 8;
  EXPECT_NEAR(out[0].box.x1, cx - 8, 1e-5);  // width 2 * 8
  EXPECT_NEAR(out[0].box.y2, cy + 4, 1e-5);  // height 1 * 8
  EXPECT_NEAR(out[0].landmarks[0].x, (2 + 0.5f) * 8, 1e-5);
  EXPECT_NEAR(out[0].landmarks[0].y, (1 - 0.5f) * 8, 1e-5);
}

// ---- real models on real photos -------------------------------------------------------------

namespace {

std::vector<std::string> deepface_photos() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(shared_face("deepface"))) {
    const std::string ext = e.path().extension().string();
    if (ext == ".jpg" || ext == ".png" || ext == ".jpeg" || ext == ".webp") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

ap::AnalyzerOptions two_threads() {
  ap::AnalyzerOptions o;
  o.runtime.threads = 2;
  return o;
}

}  // namespace

TEST(RealDetection, Scrfd500mFindsAFaceInEveryDeepfacePhoto) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  REQUIRE_SHARED(shared_face("deepface"));
  ap::FaceAnalyzer analyzer(shared_model("scrfd_500m_bnkps.onnx"), "", two_threads());
  const auto files = deepface_photos();
  ASSERT_GE(files.size(), 61u);
  for (const auto& file : files) {
    const auto photo = analyzer.load_image(file);
    const auto faces = analyzer.detect(photo);
    ASSERT_FALSE(faces.empty()) << file;
    const ap::Detection& d = faces.front().detection;
    EXPECT_GE(d.score, 0.5f) << file;
    ASSERT_TRUE(d.has_landmarks);
    // Landmarks of the best face lie inside (a slightly grown) box, eyes above the mouth.
    for (const auto& p : d.landmarks) {
      EXPECT_GT(p.x, d.box.x1 - 0.1f * d.box.width()) << file;
      EXPECT_LT(p.x, d.box.x2 + 0.1f * d.box.width()) << file;
      EXPECT_GT(p.y, d.box.y1 - 0.1f * d.box.height()) << file;
      EXPECT_LT(p.y, d.box.y2 + 0.1f * d.box.height()) << file;
    }
    EXPECT_LT(d.landmarks[0].y, d.landmarks[3].y) << file;
    EXPECT_LT(d.landmarks[1].y, d.landmarks[4].y) << file;
  }
}

TEST(RealDetection, GroupPhotoHasAtLeastFiveFaces) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  REQUIRE_SHARED(shared_face("insightface/t1.jpg"));
  ap::FaceAnalyzer analyzer(shared_model("scrfd_500m_bnkps.onnx"), "", two_threads());
  const auto faces = analyzer.detect(analyzer.load_image(shared_face("insightface/t1.jpg")));
  EXPECT_GE(faces.size(), 5u);
  for (size_t i = 1; i < faces.size(); ++i) EXPECT_GE(faces[i - 1].detection.score, faces[i].detection.score);
}

TEST(RealDetection, AllDetectorFamiliesAgreeOnTheMainFace) {
  for (const char* name : {"scrfd_500m_bnkps.onnx", "scrfd_2.5g_bnkps.onnx", "yunet_n_320_320.onnx",
                           "version-RFB-320.onnx"}) {
    REQUIRE_SHARED(shared_model(name));
  }
  REQUIRE_SHARED(shared_face("deepface"));
  ap::FaceAnalyzer reference(shared_model("scrfd_500m_bnkps.onnx"), "", two_threads());
  for (const char* name : {"scrfd_2.5g_bnkps.onnx", "yunet_n_320_320.onnx", "version-RFB-320.onnx"}) {
    auto options = two_threads();
    ap::FaceAnalyzer other(shared_model(name), "", options);
    int agree = 0, total = 0;
    for (const char* file : {"img1.jpg", "img2.jpg", "img5.jpg", "img8.jpg", "img12.jpg", "img20.jpg"}) {
      const auto photo = reference.load_image(shared_face(std::string("deepface/") + file));
      const auto ref = reference.detect(photo);
      const auto got = other.detect(photo);
      ++total;
      if (ref.empty() || got.empty()) continue;
      const ap::Detection r = ref.front().detection;
      float best = 0;
      const ap::Face* match = nullptr;
      for (const auto& f : got) {
        const float o = ap::iou(r.box, f.detection.box);
        if (o > best) best = o, match = &f;
      }
      if (best > 0.5f) ++agree;
      // Landmarks in the same order as SCRFD's: each point within a fifth of the box size.
      if (match != nullptr && match->detection.has_landmarks) {
        for (int i = 0; i < 5; ++i) {
          const float dx = match->detection.landmarks[i].x - r.landmarks[i].x;
          const float dy = match->detection.landmarks[i].y - r.landmarks[i].y;
          EXPECT_LT(std::hypot(dx, dy), 0.2f * r.box.width()) << name << " " << file << " point " << i;
        }
      }
    }
    EXPECT_EQ(agree, total) << name;
  }
}

TEST(RealDetection, BatchedDetectionEqualsOneByOne) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  REQUIRE_SHARED(shared_face("deepface"));
  ap::FaceAnalyzer analyzer(shared_model("scrfd_500m_bnkps.onnx"), "", two_threads());
  std::vector<arcforge::image::Image> photos;
  for (const char* file : {"img1.jpg", "img3.jpg", "couple.jpg"}) {
    photos.push_back(analyzer.load_image(shared_face(std::string("deepface/") + file)));
  }
  const auto batched = analyzer.detect_batch(photos);
  ASSERT_EQ(batched.size(), photos.size());
  for (size_t i = 0; i < photos.size(); ++i) {
    const auto single = analyzer.detect(photos[i]);
    ASSERT_EQ(single.size(), batched[i].size()) << i;
    for (size_t j = 0; j < single.size(); ++j) {
      EXPECT_NEAR(single[j].detection.box.x1, batched[i][j].detection.box.x1, 1e-2);
      EXPECT_NEAR(single[j].detection.score, batched[i][j].detection.score, 1e-5);
    }
  }
}

TEST(RealDetection, NotADetectorIsAClearError) {
  REQUIRE_SHARED(shared_model("paddle_mobilefacenet128.onnx"));
  try {
    ap::load_detector(shared_model("paddle_mobilefacenet128.onnx"));
    FAIL() << "expected an error";
  } catch (const arcforge::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("paddle_mobilefacenet128.onnx"), std::string::npos) << e.what();
  }
}
