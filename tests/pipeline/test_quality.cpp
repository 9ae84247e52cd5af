// Quality signals against independent references:
// - laplacian_variance: values worked out by hand (a single bright pixel, BT.601 gray of pure
//   colours as cv2 gives them: red 76, green 150, blue 29), and cv::cvtColor + cv::Laplacian(ksize=1)
//   + cv::meanStdDev on real photos (relative 1e-6); a blurred photo scores lower than the sharp one;
// - estimate_pose: the frontal template, mirrored and rotated landmarks, and orthographic projections
//   of the documented rigid model, whose yaw and pitch the estimate must recover;
// - the gate: rejection strings and --min-quality parsing, valid and invalid.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/image/image.hpp"
#include "arcforge/image/resize.hpp"
#include "arcforge/pipeline/alignment.hpp"
#include "arcforge/pipeline/geometry.hpp"
#include "shared_data.hpp"
#include "arcforge/pipeline/quality.hpp"

#ifdef ARCFORGE_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace ai = arcforge::image;
namespace ap = arcforge::pipeline;

namespace {

using arcforge::pipeline::test::faces_dir;

constexpr double kPi = std::numbers::pi;

// ---------------------------------------------------------------- blur ----------------------------

TEST(LaplacianVariance, SingleBrightPixelByHand) {
  // 5x5 zeros with v at the centre: the Laplacian is -4v there, +v at its 4 neighbours, 0 elsewhere
  // (no border involved): mean 0, variance (16 + 4) v^2 / 25.
  ai::Image gray(5, 5, 1);
  gray.at(2, 2, 0) = 200;
  EXPECT_DOUBLE_EQ(ap::laplacian_variance(gray), 20.0 * 200 * 200 / 25);
  // In a corner, BORDER_REFLECT_101 reads (-1,0) as (1,0) and (0,-1) as (0,1), both 0: the corner's
  // Laplacian is -4v; (1,0) and (0,1) see v once; every other pixel 0.
  ai::Image corner(5, 5, 1);
  corner.at(0, 0, 0) = 100;
  const double v = 100;
  const double mean = (-4 * v + v + v) / 25;
  const double variance = (16 * v * v + v * v + v * v) / 25 - mean * mean;
  EXPECT_NEAR(ap::laplacian_variance(corner), variance, 1e-9);
  // A constant image has no edges.
  ai::Image flat(9, 7, 3);
  std::fill(flat.pixels.begin(), flat.pixels.end(), 123);
  EXPECT_EQ(ap::laplacian_variance(flat), 0.0);
}

TEST(LaplacianVariance, GrayIsOpenCvsBt601FixedPoint) {
  // One coloured pixel in the middle of a black 5x5: as above, variance 20 g^2 / 25 for its gray g.
  auto gray_of = [](uint8_t r, uint8_t g, uint8_t b) {
    ai::Image image(5, 5, 3);
    image.at(2, 2, 0) = r, image.at(2, 2, 1) = g, image.at(2, 2, 2) = b;
    return std::sqrt(ap::laplacian_variance(image) * 25 / 20);
  };
  EXPECT_NEAR(gray_of(255, 0, 0), 76, 1e-9);   // cv2.cvtColor of pure red (RGB order)
  EXPECT_NEAR(gray_of(0, 255, 0), 150, 1e-9);  // pure green
  EXPECT_NEAR(gray_of(0, 0, 255), 29, 1e-9);   // pure blue
  EXPECT_NEAR(gray_of(255, 255, 255), 255, 1e-9);
  // 0.587 * 153 + 0.114 * 85 = 99.501: OpenCV's 15-bit weights round it to 100 (14-bit ones give 99).
  EXPECT_NEAR(gray_of(0, 153, 85), 100, 1e-9);
}

TEST(LaplacianVariance, RejectsEmptyImages) {
  EXPECT_THROW(ap::laplacian_variance(ai::Image()), arcforge::InputError);
  // A single pixel reflects onto itself: zero, not an error.
  ai::Image one(1, 1, 1);
  one.at(0, 0, 0) = 9;
  EXPECT_EQ(ap::laplacian_variance(one), 0.0);
}

TEST(LaplacianVariance, BlurredPhotoScoresLower) {
  const std::string path = faces_dir() + "/insightface/Tom_Hanks_54745.png";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
  const ai::Image sharp = ai::decode_file(path);
  ASSERT_EQ(sharp.width, 112);
  // Blur: down to 56 and back up (a 2-tap box then bilinear), and a stronger 28 round trip.
  const ai::Image soft = ai::resize_bilinear(ai::resize_bilinear(sharp, 56, 56), 112, 112);
  const ai::Image softer = ai::resize_bilinear(ai::resize_bilinear(sharp, 28, 28), 112, 112);
  const double s0 = ap::laplacian_variance(sharp), s1 = ap::laplacian_variance(soft),
               s2 = ap::laplacian_variance(softer);
  EXPECT_GT(s0, 2 * s1) << s0 << " " << s1;
  EXPECT_GT(s1, 2 * s2) << s1 << " " << s2;
}

#ifdef ARCFORGE_HAVE_OPENCV
double opencv_laplacian_variance(const ai::Image& image) {
  cv::Mat mat(image.height, image.width, CV_8UC(image.channels), const_cast<uint8_t*>(image.pixels.data()));
  cv::Mat gray, laplacian;
  if (image.channels == 3) {
    cv::cvtColor(mat, gray, cv::COLOR_RGB2GRAY);
  } else {
    gray = mat;
  }
  cv::Laplacian(gray, laplacian, CV_64F, 1);
  cv::Scalar mean, stddev;
  cv::meanStdDev(laplacian, mean, stddev);
  return stddev[0] * stddev[0];
}

TEST(LaplacianVariance, MatchesOpenCvOnRealPhotosAndNoise) {
  std::vector<ai::Image> images;
  for (const std::string name : {"deepface/img1.jpg", "insightface/Tom_Hanks_54745.png", "insightface/t1.jpg"}) {
    const std::string path = faces_dir() + "/" + name;
    if (std::filesystem::exists(path)) images.push_back(ai::decode_file(path));
  }
  if (images.empty()) std::cerr << "[ WARNING  ] no ../shared/faces: only synthetic images checked\n";
  std::mt19937 rng(60);
  for (int channels : {1, 3}) {
    ai::Image noise(67, 45, channels);
    for (auto& v : noise.pixels) v = static_cast<uint8_t>(rng() & 0xFF);
    images.push_back(noise);
  }
  for (const ai::Image& image : images) {
    const double ours = ap::laplacian_variance(image), reference = opencv_laplacian_variance(image);
    EXPECT_NEAR(ours, reference, 1e-6 * reference) << image.width << "x" << image.height;
  }
}
#endif

// ---------------------------------------------------------------- pose ----------------------------

ap::Landmarks5 rotate(const ap::Landmarks5& l, double degrees, ap::Point2 centre) {
  const double r = degrees * kPi / 180, c = std::cos(r), s = std::sin(r);
  ap::Landmarks5 out{};
  for (size_t i = 0; i < 5; ++i) {
    const double x = l[i].x - centre.x, y = l[i].y - centre.y;
    out[i] = {static_cast<float>(centre.x + c * x - s * y), static_cast<float>(centre.y + s * x + c * y)};
  }
  return out;
}

// Mirror about x = axis; left and right swap names, as a detector would label the mirrored face.
ap::Landmarks5 mirror(const ap::Landmarks5& l, float axis) {
  auto m = [axis](ap::Point2 p) { return ap::Point2{2 * axis - p.x, p.y}; };
  return {m(l[1]), m(l[0]), m(l[2]), m(l[4]), m(l[3])};
}

// The documented rigid face (units of inter-ocular distance, x right, y down, z toward the camera):
// eyes (+-0.5, 0, 0), mouth corners (+-0.4, H, 0), nose tip (0, t0 H, 0.5) with the template's
// H and t0; turned by yaw about the vertical axis, then pitch about the horizontal one, projected
// orthographically at 100 px per unit around (300, 200).
ap::Landmarks5 project(double yaw_degrees, double pitch_degrees) {
  const ap::Landmarks5& t = ap::arcface_template_112();
  const double iod = std::hypot(t[1].x - t[0].x, t[1].y - t[0].y);
  const double eye_y = (t[0].y + t[1].y) / 2.0, mouth_y = (t[3].y + t[4].y) / 2.0;
  const double height = (mouth_y - eye_y) / iod, t0 = (t[2].y - eye_y) / (mouth_y - eye_y);
  const double points[5][3] = {{-0.5, 0, 0}, {0.5, 0, 0}, {0, t0 * height, 0.5}, {-0.4, height, 0}, {0.4, height, 0}};
  const double yaw = yaw_degrees * kPi / 180, pitch = pitch_degrees * kPi / 180;
  ap::Landmarks5 out{};
  for (size_t i = 0; i < 5; ++i) {
    const double x = points[i][0], y = points[i][1], z = points[i][2];
    // Yaw > 0 turns the nose (z > 0) toward +x.
    const double x1 = x * std::cos(yaw) + z * std::sin(yaw), z1 = -x * std::sin(yaw) + z * std::cos(yaw);
    // Pitch > 0 (looking up) moves the nose (z > 0) toward -y, i.e. up in the image.
    const double y2 = y * std::cos(pitch) - z1 * std::sin(pitch);
    out[i] = {static_cast<float>(300 + 100 * x1), static_cast<float>(200 + 100 * y2)};
  }
  return out;
}

TEST(EstimatePose, FrontalTemplateIsNearZero) {
  const ap::Pose p = ap::estimate_pose(ap::arcface_template_112());
  EXPECT_NEAR(p.yaw, 0, 0.1);
  EXPECT_NEAR(p.pitch, 0, 1e-6);
  // The template's eye line itself slopes by atan2(-0.1949, 35.2372).
  EXPECT_NEAR(p.roll, std::atan2(51.5014 - 51.6963, 73.5318 - 38.2946) * 180 / kPi, 1e-4);
  EXPECT_NEAR(p.roll, -0.317, 0.001);
  // Position and scale do not matter.
  ap::Landmarks5 moved = ap::arcface_template_112();
  for (auto& q : moved) q = {q.x * 3.7f + 500, q.y * 3.7f - 20};
  const ap::Pose m = ap::estimate_pose(moved);
  EXPECT_NEAR(m.yaw, p.yaw, 1e-3);
  EXPECT_NEAR(m.pitch, p.pitch, 1e-3);
  EXPECT_NEAR(m.roll, p.roll, 1e-3);
}

TEST(EstimatePose, RecoversTheRigidModelsYawAndPitch) {
  for (double yaw : {-50.0, -30.0, -10.0, 0.0, 5.0, 20.0, 45.0}) {
    const ap::Pose p = ap::estimate_pose(project(yaw, 0));
    EXPECT_NEAR(p.yaw, yaw, 0.05) << yaw;
    EXPECT_NEAR(p.pitch, 0, 0.05) << yaw;
    EXPECT_NEAR(p.roll, 0, 0.01) << yaw;
  }
  for (double pitch : {-40.0, -15.0, 10.0, 30.0}) {
    const ap::Pose p = ap::estimate_pose(project(0, pitch));
    EXPECT_NEAR(p.pitch, pitch, 0.05) << pitch;
    EXPECT_NEAR(p.yaw, 0, 0.05) << pitch;
  }
  // Both at once: not exact (no coupling terms), still close and with the right signs.
  const ap::Pose both = ap::estimate_pose(project(25, -20));
  EXPECT_NEAR(both.yaw, 25, 3);
  EXPECT_NEAR(both.pitch, -20, 3);
}

TEST(EstimatePose, MirroredFacesFlipYawAndRoll) {
  for (double yaw : {-35.0, 15.0, 40.0}) {
    const ap::Landmarks5 face = rotate(project(yaw, 12), 8, {300, 200});
    const ap::Pose p = ap::estimate_pose(face), q = ap::estimate_pose(mirror(face, 250));
    EXPECT_GT(std::abs(p.yaw), 10);
    EXPECT_NEAR(q.yaw, -p.yaw, 1e-3);
    EXPECT_NEAR(q.roll, -p.roll, 1e-3);
    EXPECT_NEAR(q.pitch, p.pitch, 1e-3);
  }
}

TEST(EstimatePose, RotatingTheImageAddsToRollOnly) {
  const ap::Landmarks5& t = ap::arcface_template_112();
  const ap::Pose base = ap::estimate_pose(project(20, -10));
  const ap::Pose frontal = ap::estimate_pose(t);
  for (double angle : {-60.0, -15.0, 7.5, 30.0, 89.0}) {
    const ap::Pose p = ap::estimate_pose(rotate(project(20, -10), angle, {123, 456}));
    EXPECT_NEAR(p.roll, base.roll + angle, 0.1) << angle;
    // Turned sideways only, the model's eyes stay level: the roll is the rotation itself.
    EXPECT_NEAR(ap::estimate_pose(rotate(project(35, 0), angle, {10, 20})).roll, angle, 0.1) << angle;
    EXPECT_NEAR(p.yaw, base.yaw, 0.05) << angle;
    EXPECT_NEAR(p.pitch, base.pitch, 0.05) << angle;
    const ap::Pose r = ap::estimate_pose(rotate(t, angle, {56, 70}));
    EXPECT_NEAR(r.roll - frontal.roll, angle, 0.1) << angle;
  }
}

TEST(EstimatePose, DegenerateLandmarksSaturateInsteadOfThrowing) {
  // What a false detection can give; the analyzer estimates the pose of every detection.
  ap::Landmarks5 same_eyes = ap::arcface_template_112();
  same_eyes[1] = same_eyes[0];
  const ap::Pose a = ap::estimate_pose(same_eyes);
  EXPECT_EQ(a.yaw, 90);
  EXPECT_EQ(a.pitch, 90);
  ap::Landmarks5 mouth_on_eyes = ap::arcface_template_112();
  mouth_on_eyes[3] = mouth_on_eyes[0];
  mouth_on_eyes[4] = mouth_on_eyes[1];
  const ap::Pose b = ap::estimate_pose(mouth_on_eyes);
  EXPECT_EQ(b.pitch, 90);
  EXPECT_NEAR(b.yaw, 0, 1);
  EXPECT_NEAR(b.roll, -0.317, 0.001);
  ap::Landmarks5 upside = ap::arcface_template_112();
  std::swap(upside[0], upside[3]);
  std::swap(upside[1], upside[4]);
  EXPECT_EQ(ap::estimate_pose(upside).pitch, 90);
  // The default gate lets them through, a stricter one does not.
  ap::FaceQuality q;
  q.pose = a;
  EXPECT_EQ(ap::quality_rejection(q, ap::QualityGate{}), "");
  EXPECT_EQ(ap::quality_rejection(q, ap::parse_quality_gate("yaw=60,pitch=60")), "yaw 90 deg > 60 deg; pitch 90 deg > 60 deg");
  // Garbage in is an error.
  ap::Landmarks5 nan = ap::arcface_template_112();
  nan[2].x = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(ap::estimate_pose(nan), arcforge::InputError);
}

// ---------------------------------------------------------------- gate ----------------------------

TEST(QualityGate, RejectionMessages) {
  ap::QualityGate gate;
  ap::FaceQuality q;
  q.detector_score = 0.9;
  q.face_size = 31;
  q.pose = {52.04, -12, 3};
  q.blur = 12.345;
  EXPECT_EQ(ap::quality_rejection(q, gate), "");  // the default gate accepts everything
  gate.min_face_size = 40;
  EXPECT_EQ(ap::quality_rejection(q, gate), "face 31 px < 40 px");
  gate.max_abs_yaw = 45;
  gate.min_blur = 50;
  gate.min_detector_score = 0.95;
  EXPECT_EQ(ap::quality_rejection(q, gate), "score 0.9 < 0.95; face 31 px < 40 px; yaw 52.04 deg > 45 deg; "
                                            "blur 12.35 < 50");
  gate.max_abs_pitch = 10;
  q = {0.96, 41.5, {-44.9, -12.5, 0}, 51};
  EXPECT_EQ(ap::quality_rejection(q, gate), "pitch -12.5 deg > 10 deg");
  q.pose.pitch = 10;  // limits are inclusive
  EXPECT_EQ(ap::quality_rejection(q, gate), "");
  q.detector_score = std::numeric_limits<double>::quiet_NaN();  // NaN never passes
  EXPECT_EQ(ap::quality_rejection(q, gate), "score nan < 0.95");
}

TEST(QualityGate, ParsesMinQuality) {
  const ap::QualityGate g = ap::parse_quality_gate("score=0.6,size=40,yaw=45,pitch=30,blur=50");
  EXPECT_DOUBLE_EQ(g.min_detector_score, 0.6);
  EXPECT_DOUBLE_EQ(g.min_face_size, 40);
  EXPECT_DOUBLE_EQ(g.max_abs_yaw, 45);
  EXPECT_DOUBLE_EQ(g.max_abs_pitch, 30);
  EXPECT_DOUBLE_EQ(g.min_blur, 50);
  const ap::QualityGate partial = ap::parse_quality_gate(" size = 64 , yaw=1e1 ");
  EXPECT_DOUBLE_EQ(partial.min_face_size, 64);
  EXPECT_DOUBLE_EQ(partial.max_abs_yaw, 10);
  EXPECT_DOUBLE_EQ(partial.min_detector_score, 0);
  EXPECT_DOUBLE_EQ(partial.max_abs_pitch, 90);
  EXPECT_DOUBLE_EQ(partial.min_blur, 0);
  const ap::QualityGate empty = ap::parse_quality_gate("  ");
  EXPECT_DOUBLE_EQ(empty.max_abs_yaw, 90);
  EXPECT_DOUBLE_EQ(empty.min_face_size, 0);
}

TEST(QualityGate, RejectsBadMinQuality) {
  auto expect_config_error = [](const std::string& text, const std::string& fragment) {
    try {
      ap::parse_quality_gate(text);
      ADD_FAILURE() << "expected ConfigError for '" << text << "'";
    } catch (const arcforge::ConfigError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("--min-quality"), std::string::npos) << message;
      EXPECT_NE(message.find(fragment), std::string::npos) << message;
    }
  };
  expect_config_error("score=0.6,sharpness=3", "unknown key 'sharpness'");
  expect_config_error("size=forty", "size needs a finite number");
  expect_config_error("size=40px", "size needs a finite number");
  expect_config_error("size=", "size needs a finite number");
  expect_config_error("blur=-1", "blur needs a finite number >= 0");
  expect_config_error("score=nan", "score needs a finite number");
  expect_config_error("score=inf", "score needs a finite number");
  expect_config_error("yaw=200", "at most 180");
  expect_config_error("size=40,size=50", "given twice");
  expect_config_error("size40", "expected key=value");
  expect_config_error("size=40,", "expected key=value");
  expect_config_error("size=40,,yaw=3", "expected key=value");
}

}  // namespace
