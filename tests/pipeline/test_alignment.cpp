// Alignment and the image geometry under it, against independent references:
// - OpenCV (cv::resize INTER_LINEAR, cv::warpAffine INTER_LINEAR + BORDER_CONSTANT) on random images
//   and real photos from ../shared/faces: within one grey level (OpenCV blends in fixed point);
// - estimate_similarity against exact dyadic similarities (exactly representable points, so the
//   recovery must be exact to rounding) and against the 2N x 4 linear least-squares problem solved
//   here through its normal equations;
// - the ArcFace template constants typed in from InsightFace's face_align.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/image/image.hpp"
#include "arcforge/image/resize.hpp"
#include "arcforge/image/warp.hpp"
#include "arcforge/pipeline/alignment.hpp"
#include "arcforge/pipeline/geometry.hpp"
#include "shared_data.hpp"

#ifdef ARCFORGE_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace ai = arcforge::image;
namespace ap = arcforge::pipeline;

namespace {

using arcforge::pipeline::test::faces_dir;

ai::Image random_image(int width, int height, int channels, uint32_t seed) {
  ai::Image image(width, height, channels);
  std::mt19937 rng(seed);
  for (auto& v : image.pixels) v = static_cast<uint8_t>(rng() & 0xFF);
  return image;
}

ai::Image smooth_image(int width, int height) {
  ai::Image image(width, height, 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        image.at(x, y, c) = static_cast<uint8_t>(
            std::lround(127.5 + 100 * std::sin(0.11 * x + 0.9 * c) * std::cos(0.07 * y - 0.4 * c)));
      }
    }
  }
  return image;
}

std::array<double, 6> similarity(double scale, double degrees, double tx, double ty) {
  const double r = degrees * std::numbers::pi / 180;
  return {scale * std::cos(r), -scale * std::sin(r), tx, scale * std::sin(r), scale * std::cos(r), ty};
}

ap::Point2 apply(const std::array<double, 6>& m, ap::Point2 p) { return ap::Affine2x3{m}.apply(p); }

struct Diff {
  int max = 0;
  double mean = 0;
};

Diff compare(const ai::Image& a, const ai::Image& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  EXPECT_EQ(a.channels, b.channels);
  Diff d;
  if (a.pixels.size() != b.pixels.size() || a.pixels.empty()) return {256, 256};
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const int e = std::abs(a.pixels[i] - b.pixels[i]);
    d.max = std::max(d.max, e);
    sum += e;
  }
  d.mean = sum / static_cast<double>(a.pixels.size());
  return d;
}

ai::Image load_photo(const std::string& relative) {
  return ai::decode_file(faces_dir() + "/" + relative);
}

bool have_faces() { return std::filesystem::exists(faces_dir() + "/deepface/img1.jpg"); }

// ---------------------------------------------------------------- OpenCV parity -------------------
#ifdef ARCFORGE_HAVE_OPENCV

cv::Mat as_mat(const ai::Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC(image.channels), const_cast<uint8_t*>(image.pixels.data()));
}

ai::Image from_mat(const cv::Mat& mat) {
  ai::Image image(mat.cols, mat.rows, mat.channels());
  for (int y = 0; y < mat.rows; ++y) std::copy_n(mat.ptr<uint8_t>(y), image.row_bytes(), &image.pixels[image.index(0, y, 0)]);
  return image;
}

ai::Image cv_resize(const ai::Image& src, int width, int height) {
  cv::Mat out;
  cv::resize(as_mat(src), out, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);
  return from_mat(out);
}

ai::Image cv_warp(const ai::Image& src, const std::array<double, 6>& m, int width, int height, uint8_t border = 0) {
  cv::Mat matrix(2, 3, CV_64F);
  for (int i = 0; i < 6; ++i) matrix.at<double>(i / 3, i % 3) = m[static_cast<size_t>(i)];
  cv::Mat out;
  cv::warpAffine(as_mat(src), out, matrix, cv::Size(width, height), cv::INTER_LINEAR, cv::BORDER_CONSTANT,
                 cv::Scalar::all(border));
  return from_mat(out);
}

TEST(OpenCvParity, ResizeRandomImages) {
  for (int channels : {1, 3}) {
    const ai::Image src = random_image(97, 61, channels, 10 + channels);
    for (const auto& [w, h] :
         std::vector<std::pair<int, int>>{{640, 640}, {194, 122}, {48, 30}, {33, 71}, {97, 61}, {1, 1}, {300, 7}, {64, 200}}) {
      // Same fixed point as OpenCV: equal except where OpenCV's scalar row tail rounds differently.
      const Diff d = compare(ai::resize_bilinear(src, w, h), cv_resize(src, w, h));
      EXPECT_LE(d.max, 1) << channels << "ch " << w << "x" << h;
      EXPECT_LT(d.mean, 0.005) << channels << "ch " << w << "x" << h;
      // Rows that are whole 16-byte vectors have no scalar tail: bit-identical.
      if ((w * channels) % 16 == 0) {
        EXPECT_EQ(d.max, 0) << channels << "ch " << w << "x" << h;
      }
    }
  }
}

TEST(OpenCvParity, WarpRandomImages) {
  std::mt19937 rng(20);
  std::uniform_real_distribution<double> scale(0.3, 3), angle(-180, 180), shift(-60, 60);
  for (int channels : {1, 3}) {
    const ai::Image src = random_image(120, 90, channels, 30 + channels);
    for (int trial = 0; trial < 12; ++trial) {
      const auto m = similarity(scale(rng), angle(rng), 56 + shift(rng), 56 + shift(rng));
      const uint8_t border = trial % 3 == 0 ? 255 : 0;
      const Diff d = compare(ai::warp_affine(src, m, 112, 112, border), cv_warp(src, m, 112, 112, border));
      EXPECT_EQ(d.max, 0) << channels << "ch trial " << trial;
      EXPECT_LT(d.mean, 0.05) << channels << "ch trial " << trial;
    }
    // A general (sheared, anisotropic) affine map too: the warp is not limited to similarities.
    const std::array<double, 6> shear{1.3, 0.4, -10, -0.2, 0.7, 15};
    const Diff d = compare(ai::warp_affine(src, shear, 150, 100), cv_warp(src, shear, 150, 100));
    EXPECT_EQ(d.max, 0);
  }
}

TEST(OpenCvParity, ResizeAndWarpRealPhotos) {
  if (!have_faces()) GTEST_SKIP() << "no " << faces_dir() << ": real-photo parity not checked";
  for (const std::string name : {"deepface/img1.jpg", "deepface/img2.jpg", "insightface/t1.jpg"}) {
    const ai::Image photo = load_photo(name);
    // The detector letterbox: longer side to 640, aspect kept.
    const double s = 640.0 / std::max(photo.width, photo.height);
    const int w = static_cast<int>(photo.width * s), h = static_cast<int>(photo.height * s);
    Diff d = compare(ai::resize_bilinear(photo, w, h), cv_resize(photo, w, h));
    EXPECT_LE(d.max, 1) << name;
    EXPECT_LT(d.mean, 0.001) << name;
    d = compare(ai::resize_bilinear(photo, photo.width * 3 / 2, photo.height * 3 / 2),
                cv_resize(photo, photo.width * 3 / 2, photo.height * 3 / 2));
    EXPECT_LE(d.max, 1) << name;

    // align_face with plausible landmarks (a rotated, scaled template near the centre) against
    // cv2.warpAffine of the very matrix alignment_transform returns.
    const auto place = similarity(std::min(photo.width, photo.height) / 300.0, 11, photo.width / 2.0 - 60,
                                  photo.height / 2.0 - 80);
    ap::Landmarks5 landmarks{};
    for (size_t i = 0; i < 5; ++i) landmarks[i] = apply(place, ap::arcface_template_112()[i]);
    for (const auto& [cw, ch] : std::vector<std::pair<int, int>>{{112, 112}, {128, 128}, {96, 112}, {224, 224}}) {
      const ap::Affine2x3 m = ap::alignment_transform(landmarks, cw, ch);
      d = compare(ap::align_face(photo, landmarks, cw, ch), cv_warp(photo, m.m, cw, ch));
      EXPECT_EQ(d.max, 0) << name << " " << cw << "x" << ch;
      EXPECT_LT(d.mean, 0.05) << name << " " << cw << "x" << ch;
    }
  }
}

#endif  // ARCFORGE_HAVE_OPENCV

// ---------------------------------------------------------------- estimate_similarity ------------

// Least squares for q = [a -b; b a] p + t written as a 2N x 4 linear system in (a, b, tx, ty), solved
// through its 4x4 normal equations with Gaussian elimination (partial pivoting). Independent of the
// closed form in the library.
std::array<double, 6> least_squares_similarity(const std::vector<ap::Point2>& p, const std::vector<ap::Point2>& q) {
  double normal[4][5] = {};
  auto add_row = [&](const std::array<double, 4>& row, double rhs) {
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) normal[i][j] += row[static_cast<size_t>(i)] * row[static_cast<size_t>(j)];
      normal[i][4] += row[static_cast<size_t>(i)] * rhs;
    }
  };
  for (size_t k = 0; k < p.size(); ++k) {
    add_row({p[k].x, -static_cast<double>(p[k].y), 1, 0}, q[k].x);  // qx = a px - b py + tx
    add_row({p[k].y, p[k].x, 0, 1}, q[k].y);                        // qy = b px + a py + ty
  }
  for (int col = 0; col < 4; ++col) {
    int pivot = col;
    for (int r = col + 1; r < 4; ++r) {
      if (std::abs(normal[r][col]) > std::abs(normal[pivot][col])) pivot = r;
    }
    std::swap(normal[col], normal[pivot]);
    for (int r = 0; r < 4; ++r) {
      if (r == col) continue;
      const double f = normal[r][col] / normal[col][col];
      for (int j = col; j < 5; ++j) normal[r][j] -= f * normal[col][j];
    }
  }
  const double a = normal[0][4] / normal[0][0], b = normal[1][4] / normal[1][1];
  const double tx = normal[2][4] / normal[2][2], ty = normal[3][4] / normal[3][3];
  return {a, -b, tx, b, a, ty};
}

void expect_matrix_near(const std::array<double, 6>& got, const std::array<double, 6>& want, double relative) {
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(got[i], want[i], relative * std::max(1.0, std::abs(want[i]))) << "entry " << i;
  }
}

TEST(EstimateSimilarity, RecoversKnownSimilaritiesExactly) {
  // Dyadic a, b, t and integer source points: every destination coordinate is exactly a float, so
  // nothing but double rounding separates the estimate from the truth.
  std::mt19937 rng(40);
  std::uniform_int_distribution<int> coefficient(-256, 256), translation(-4000, 4000), coordinate(0, 250);
  for (int trial = 0; trial < 50; ++trial) {
    const double a = coefficient(rng) / 64.0, b = coefficient(rng) / 64.0;
    if (a == 0 && b == 0) continue;
    const std::array<double, 6> truth{a, -b, translation(rng) / 8.0, b, a, translation(rng) / 8.0};
    std::vector<ap::Point2> source(5), destination(5);
    for (size_t i = 0; i < 5; ++i) {
      source[i] = {static_cast<float>(coordinate(rng)), static_cast<float>(coordinate(rng))};
      const double x = truth[0] * source[i].x + truth[1] * source[i].y + truth[2];
      const double y = truth[3] * source[i].x + truth[4] * source[i].y + truth[5];
      destination[i] = {static_cast<float>(x), static_cast<float>(y)};
      ASSERT_EQ(destination[i].x, x);
      ASSERT_EQ(destination[i].y, y);
    }
    bool distinct = false;
    for (size_t i = 1; i < 5; ++i) distinct |= source[i].x != source[0].x || source[i].y != source[0].y;
    if (!distinct) continue;
    expect_matrix_near(ap::estimate_similarity(source, destination).m, truth, 1e-9);
  }
}

TEST(EstimateSimilarity, RecoversScaleAndAngleOfARealisticAlignment) {
  // Landmarks = template under (scale 2.5, 30 degrees, shift): aligning them back must give the
  // inverse similarity (scale 0.4, -30 degrees) to float precision of the points.
  const auto place = similarity(2.5, 30, 400, 250);
  ap::Landmarks5 landmarks{};
  for (size_t i = 0; i < 5; ++i) landmarks[i] = apply(place, ap::arcface_template_112()[i]);
  const ap::Affine2x3 m = ap::alignment_transform(landmarks);
  EXPECT_NEAR(std::hypot(m.m[0], m.m[3]), 0.4, 1e-6);
  EXPECT_NEAR(std::atan2(m.m[3], m.m[0]) * 180 / std::numbers::pi, -30, 1e-4);
  const ap::Point2 back = m.apply(landmarks[2]);
  EXPECT_NEAR(back.x, 56.0252, 1e-3);
  EXPECT_NEAR(back.y, 71.7366, 1e-3);
}

TEST(EstimateSimilarity, EqualsTheLinearLeastSquaresSolutionOnNoisyPoints) {
  std::mt19937 rng(41);
  std::uniform_real_distribution<double> scale(0.1, 8), angle(-180, 180), shift(-900, 900);
  std::normal_distribution<double> noise(0, 3);
  for (int trial = 0; trial < 30; ++trial) {
    const auto truth = similarity(scale(rng), angle(rng), shift(rng), shift(rng));
    const size_t n = 2 + static_cast<size_t>(trial % 9);
    std::vector<ap::Point2> source(n), destination(n);
    for (size_t i = 0; i < n; ++i) {
      source[i] = {static_cast<float>(shift(rng) / 3), static_cast<float>(shift(rng) / 3)};
      const ap::Point2 q = apply(truth, source[i]);
      destination[i] = {static_cast<float>(q.x + noise(rng)), static_cast<float>(q.y + noise(rng))};
    }
    const auto got = ap::estimate_similarity(source, destination).m;
    expect_matrix_near(got, least_squares_similarity(source, destination), 1e-9);
    EXPECT_EQ(got[0], got[4]);
    EXPECT_EQ(got[1], -got[3]);
  }
}

TEST(EstimateSimilarity, TwoPointsAreMatchedExactly) {
  const std::vector<ap::Point2> source{{10, 20}, {30, 5}}, destination{{-4, 7}, {12, 40}};
  const ap::Affine2x3 m = ap::estimate_similarity(source, destination);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(m.apply(source[i]).x, destination[i].x, 1e-4);
    EXPECT_NEAR(m.apply(source[i]).y, destination[i].y, 1e-4);
  }
}

TEST(EstimateSimilarity, AMirroredPointSetNeverGivesAReflection) {
  std::vector<ap::Point2> source(ap::arcface_template_112().begin(), ap::arcface_template_112().end());
  std::vector<ap::Point2> mirrored = source;
  for (auto& p : mirrored) p.x = 300 - p.x;
  const ap::Affine2x3 m = ap::estimate_similarity(source, mirrored);
  EXPECT_GT(m.determinant(), 0);
  EXPECT_EQ(m.m[0], m.m[4]);
  EXPECT_EQ(m.m[1], -m.m[3]);
  // Still the best proper similarity.
  expect_matrix_near(m.m, least_squares_similarity(source, mirrored), 1e-9);
}

TEST(EstimateSimilarity, DegenerateInputIsAClearError) {
  const std::vector<ap::Point2> same(5, ap::Point2{3, 4});
  const std::vector<ap::Point2> spread{{0, 0}, {10, 0}, {0, 10}, {10, 10}, {5, 5}};
  auto expect_error = [](const std::vector<ap::Point2>& s, const std::vector<ap::Point2>& d, const std::string& what) {
    try {
      ap::estimate_similarity(s, d);
      ADD_FAILURE() << "expected InputError about " << what;
    } catch (const arcforge::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(same, spread, "source points all coincide");
  expect_error(spread, same, "destination points all coincide");
  expect_error({{1, 2}}, {{3, 4}}, "at least 2");
  expect_error({}, {}, "at least 2");
  expect_error(spread, {{1, 1}, {2, 2}}, "5 source points but 2 destination");
  ap::Landmarks5 collapsed{};
  EXPECT_THROW(ap::align_face(random_image(50, 50, 3, 1), collapsed), arcforge::InputError);
}

// ---------------------------------------------------------------- template and crops -------------

TEST(ArcfaceTemplate, MatchesInsightFaceConstants) {
  // face_align.py arcface_dst.
  const double expected[5][2] = {{38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366},
                                 {41.5493, 92.3655}, {70.7299, 92.2041}};
  const ap::Landmarks5& t = ap::arcface_template_112();
  const ap::Landmarks5 t112 = ap::arcface_template(112, 112);
  const ap::Landmarks5 t96 = ap::arcface_template(96, 112);
  const ap::Landmarks5 t128 = ap::arcface_template(128, 128);
  const ap::Landmarks5 t224 = ap::arcface_template(224, 224);
  const ap::Landmarks5 t256 = ap::arcface_template(256, 256);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_FLOAT_EQ(t[i].x, expected[i][0]);
    EXPECT_FLOAT_EQ(t[i].y, expected[i][1]);
    EXPECT_FLOAT_EQ(t112[i].x, expected[i][0]);
    EXPECT_FLOAT_EQ(t112[i].y, expected[i][1]);
    // The old 112x96 crop (face_preprocess.py: 30.2946, 65.5318, ... for x).
    EXPECT_NEAR(t96[i].x, expected[i][0] - 8, 1e-4);
    EXPECT_FLOAT_EQ(t96[i].y, expected[i][1]);
    // estimate_norm(image_size=128): ratio 1, x + 8.
    EXPECT_NEAR(t128[i].x, expected[i][0] + 8, 1e-4);
    EXPECT_FLOAT_EQ(t128[i].y, expected[i][1]);
    EXPECT_NEAR(t224[i].x, expected[i][0] * 2, 1e-4);
    EXPECT_NEAR(t224[i].y, expected[i][1] * 2, 1e-4);
    EXPECT_NEAR(t256[i].x, expected[i][0] * 2 + 16, 1e-4);
    EXPECT_NEAR(t256[i].y, expected[i][1] * 2, 1e-4);
  }
  EXPECT_FLOAT_EQ(ap::arcface_template(96, 112)[0].x, 30.2946f);
  EXPECT_THROW(ap::arcface_template(0, 112), arcforge::ConfigError);
  EXPECT_THROW(ap::arcface_template(112, 100), arcforge::ConfigError);
  EXPECT_THROW(ap::arcface_template(-112, -112), arcforge::ConfigError);
}

TEST(AlignFace, TemplateLandmarksGiveTheIdentityCrop) {
  const ai::Image photo = random_image(200, 150, 3, 50);
  for (const auto& [w, h] : std::vector<std::pair<int, int>>{{112, 112}, {96, 112}, {128, 128}}) {
    const ap::Landmarks5 landmarks = ap::arcface_template(w, h);
    const ap::Affine2x3 m = ap::alignment_transform(landmarks, w, h);
    expect_matrix_near(m.m, {1, 0, 0, 0, 1, 0}, 1e-12);
    const ai::Image crop = ap::align_face(photo, landmarks, w, h);
    ASSERT_EQ(crop.width, w);
    ASSERT_EQ(crop.height, h);
    ASSERT_EQ(crop.channels, 3);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        for (int c = 0; c < 3; ++c) ASSERT_EQ(crop.at(x, y, c), photo.at(x, y, c)) << w << "x" << h;
      }
    }
  }
}

TEST(AlignFace, UndoesAKnownPlacementOfAFace) {
  // Paint a smooth 112x112 "face" into a larger photo with a known similarity (2x, rotated, moved),
  // move the template landmarks the same way, align: the crop must come back to the original.
  const ai::Image face = smooth_image(112, 112);
  const auto place = similarity(2.0, -25, 180, 120);
  const ai::Image photo = ai::warp_affine(face, place, 500, 420, 0);
  ap::Landmarks5 landmarks{};
  for (size_t i = 0; i < 5; ++i) landmarks[i] = apply(place, ap::arcface_template_112()[i]);
  const ai::Image crop = ap::align_face(photo, landmarks);
  double sum = 0;
  int count = 0, worst = 0;
  for (int y = 4; y < 108; ++y) {
    for (int x = 4; x < 108; ++x) {
      for (int c = 0; c < 3; ++c) {
        const int e = std::abs(crop.at(x, y, c) - face.at(x, y, c));
        worst = std::max(worst, e);
        sum += e;
        ++count;
      }
    }
  }
  EXPECT_LT(sum / count, 1.0);
  EXPECT_LE(worst, 4);
}

TEST(Geometry, BoxesIouAndAffineInverse) {
  const ap::Box a{0, 0, 10, 10}, b{5, 5, 15, 15}, empty{3, 3, 3, 8};
  EXPECT_FLOAT_EQ(a.width(), 10);
  EXPECT_FLOAT_EQ(a.area(), 100);
  EXPECT_FLOAT_EQ(ap::iou(a, b), 25.0f / 175.0f);
  EXPECT_FLOAT_EQ(ap::iou(a, a), 1);
  EXPECT_FLOAT_EQ(ap::iou(a, ap::Box{20, 20, 30, 30}), 0);
  EXPECT_FLOAT_EQ(ap::iou(empty, empty), 0);
  EXPECT_FLOAT_EQ((ap::Box{5, 5, 2, 2}).area(), 0);

  const ap::Affine2x3 m{{1.5, -0.25, 7, 0.5, 2, -3}};
  const ap::Affine2x3 inv = m.inverse();
  for (const ap::Point2 p : {ap::Point2{0, 0}, ap::Point2{13, -7}, ap::Point2{100.5f, 42.25f}}) {
    const ap::Point2 back = inv.apply(m.apply(p));
    EXPECT_NEAR(back.x, p.x, 1e-4);
    EXPECT_NEAR(back.y, p.y, 1e-4);
  }
  EXPECT_THROW((ap::Affine2x3{{1, 2, 0, 2, 4, 0}}).inverse(), arcforge::InputError);
}

}  // namespace
