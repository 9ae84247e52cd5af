// Photos decoded reduced (pipeline/photo.hpp): the scale choices, the coordinate map against a dot
// drawn at a known place, and the whole pipeline on real photos against the full-size decode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/data/verification_set.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/image/orientation.hpp"
#include "arcforge/pipeline/alignment.hpp"
#include "arcforge/pipeline/face_analyzer.hpp"
#include "arcforge/pipeline/photo.hpp"
#include "arcforge/pipeline/recognizer.hpp"
#include "shared_data.hpp"

namespace ai = arcforge::image;
namespace ap = arcforge::pipeline;
using namespace arcforge::pipeline::test;

namespace {

ap::AnalyzerOptions paddle_options(bool reduced) {
  ap::AnalyzerOptions o;
  o.runtime.threads = 2;
  o.recognizer_spec = ap::parse_preprocess_spec("bgr,mean=127.5,std=128");
  o.reduced_decoding = reduced;
  return o;
}

// A similarity with `scale` crop pixels per photo pixel.
ap::Affine2x3 similarity(double scale) { return ap::Affine2x3{{scale * 0.6, -scale * 0.8, 5, scale * 0.8, scale * 0.6, 7}}; }

}  // namespace

TEST(Photo, DetectionEighthsKeepTheLetterboxAReduction) {
  EXPECT_EQ(ap::detection_eighths(4352, 2903, 640, 640), 2);  // 1088 x 726; 1/8 would be 544 x 363
  EXPECT_EQ(ap::detection_eighths(1280, 960, 640, 640), 4);   // exactly 640 wide at 1/2
  EXPECT_EQ(ap::detection_eighths(1279, 960, 640, 640), 4);   // ceil(639.5) = 640 at 1/2: enough
  EXPECT_EQ(ap::detection_eighths(1270, 950, 640, 640), 5);   // 635 x 475 at 1/2: too small
  EXPECT_EQ(ap::detection_eighths(8000, 1000, 640, 640), 1);  // a panorama: 1000 wide is enough
  EXPECT_EQ(ap::detection_eighths(600, 400, 640, 640), 8);    // smaller than the input: whole
  EXPECT_EQ(ap::detection_eighths(250, 250, 320, 240), 8);    // LFW at RFB's input
}

TEST(Photo, AlignmentEighthsHoldOnePixelPerCropPixel) {
  EXPECT_EQ(ap::alignment_eighths(similarity(0.01)), 1);
  EXPECT_EQ(ap::alignment_eighths(similarity(0.125)), 1);  // exactly 1 crop pixel per 1/8 pixel
  EXPECT_EQ(ap::alignment_eighths(similarity(0.25)), 2);
  EXPECT_EQ(ap::alignment_eighths(similarity(0.3)), 3);
  EXPECT_EQ(ap::alignment_eighths(similarity(0.9)), 8);
  EXPECT_EQ(ap::alignment_eighths(similarity(3.0)), 8);  // a tiny face: full size, and still enlarged
}

TEST(Photo, CoordinateMapFollowsABlobThroughAReducedDecode) {
  // A Gaussian blob centred between pixels on a 1600x1200 JPEG: the scaled IDCT is a symmetric
  // low-pass about each output pixel's centre, so the blob's intensity centroid in the reduced
  // pixels, mapped back, lands on the full-size centre.
  ai::Image full(1600, 1200, 3);
  const double cx = 1001.3, cy = 402.7, sigma = 8;
  for (int y = 0; y < full.height; ++y) {
    for (int x = 0; x < full.width; ++x) {
      const double r2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
      const auto v = static_cast<uint8_t>(std::lround(250 * std::exp(-r2 / (2 * sigma * sigma))));
      for (int c = 0; c < 3; ++c) full.at(x, y, c) = v;
    }
  }
  const std::string jpeg = ai::encode_jpeg(full, 98, ai::ChromaSubsampling::s444);
  for (int eighths : {1, 2, 3, 4, 8}) {
    ap::Photo photo;
    photo.pixels = ai::decode_reduced(jpeg, "blob.jpg", eighths);
    photo.full_width = full.width;
    photo.full_height = full.height;
    photo.eighths = eighths;
    // The centroid over a window of +-6 sigma around the blob (JPEG noise elsewhere stays out).
    const ap::Point2 guess = photo.to_pixels({static_cast<float>(cx), static_cast<float>(cy)});
    const double reach = 6 * sigma * eighths / 8.0;
    double sum = 0, sx = 0, sy = 0;
    for (int y = static_cast<int>(guess.y - reach); y <= static_cast<int>(guess.y + reach); ++y) {
      for (int x = static_cast<int>(guess.x - reach); x <= static_cast<int>(guess.x + reach); ++x) {
        const double v = photo.pixels.at(x, y, 0);
        sum += v;
        sx += v * x;
        sy += v * y;
      }
    }
    ASSERT_GT(sum, 0) << eighths;
    const ap::Point2 back = photo.to_full({static_cast<float>(sx / sum), static_cast<float>(sy / sum)});
    // Without the pixel-centre alignment the error is 0.5 / scale - 0.5 (1.5 px at 1/4).
    EXPECT_NEAR(back.x, cx, 0.25) << eighths << "/8";
    EXPECT_NEAR(back.y, cy, 0.25) << eighths << "/8";
    const ap::Point2 there = photo.to_pixels(back);
    EXPECT_NEAR(there.x, sx / sum, 1e-3);
    EXPECT_NEAR(there.y, sy / sum, 1e-3);
  }
}

TEST(Photo, SmallAndLargeFacesAreCroppedFromFineEnoughPixels) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  REQUIRE_SHARED(shared_face("deepface/img49.jpg"));
  const ap::FaceAnalyzer analyzer(shared_model("scrfd_500m_bnkps.onnx"), "", paddle_options(true));
  const std::string file = shared_face("deepface/img49.jpg");  // 4352 x 2903
  const ap::Photo photo = analyzer.load_photo(file);
  ASSERT_EQ(photo.eighths, 2);
  EXPECT_EQ(photo.full_width, 4352);
  EXPECT_EQ(photo.pixels.width, 1088);
  ASSERT_TRUE(photo.encoded);
  const ai::Image whole = analyzer.load_image(file);
  for (const double eye_distance : {300.0, 120.0, 40.0}) {
    // A frontal face of the given eye distance, centred in the photo.
    const double s = eye_distance / (73.5318 - 38.2946);
    ap::Detection d;
    d.has_landmarks = true;
    for (int k = 0; k < 5; ++k) {
      const ap::Point2 t = ap::arcface_template_112()[k];
      d.landmarks[k] = {static_cast<float>(2000 + s * (t.x - 56)), static_cast<float>(1400 + s * (t.y - 56))};
    }
    const int needed = std::max(photo.eighths, ap::alignment_eighths(ap::alignment_transform(d.landmarks, 112, 112)));
    // The crop equals align_face on the file decoded at `needed`, the landmarks mapped there.
    ap::Photo expected_source = photo;
    expected_source.eighths = needed;
    expected_source.pixels = needed == 8 ? whole : ai::decode_reduced(*photo.encoded, file, needed);
    ap::Landmarks5 mapped = d.landmarks;
    for (auto& p : mapped) p = expected_source.to_pixels(p);
    const ai::Image expected = ap::align_face(expected_source.pixels, mapped, 112, 112);
    const ai::Image crop = analyzer.align(photo, d, 112, 112);
    EXPECT_EQ(crop.pixels, expected.pixels) << "eye distance " << eye_distance << ", " << needed << "/8";
    std::printf("eye distance %.0f px: cropped from %d/8\n", eye_distance, needed);
  }
}

TEST(Photo, RealPhotosMatchTheFullSizePipeline) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  REQUIRE_SHARED(shared_model("paddle_mobilefacenet128.onnx"));
  REQUIRE_SHARED(shared_face("deepface"));
  const std::string det = shared_model("scrfd_500m_bnkps.onnx"), rec = shared_model("paddle_mobilefacenet128.onnx");
  const ap::FaceAnalyzer reduced(det, rec, paddle_options(true)), full(det, rec, paddle_options(false));
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(shared_face("deepface"))) {
    if (e.path().extension() == ".jpg") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  int photos_reduced = 0, faces = 0, unmatched = 0;
  double min_cosine = 1, worst_corner = 0, sum_cosine = 0;
  for (const auto& file : files) {
    if (ai::sniff_format(ai::read_image_file(file)) != ai::Format::jpeg) continue;  // a WebP named .jpg
    const ap::Photo small = reduced.load_photo(file);
    const ap::Photo whole = full.load_photo(file);
    ASSERT_FALSE(whole.reduced());
    EXPECT_EQ(small.full_width, whole.full_width) << file;
    EXPECT_EQ(small.full_height, whole.full_height) << file;
    photos_reduced += small.reduced();
    const std::vector<ap::Face> a = reduced.analyze(small), b = full.analyze(whole);
    for (const ap::Face& fb : b) {
      // The same face: the best-overlapping box of the reduced run.
      const ap::Face* match = nullptr;
      float best = 0.5f;
      for (const ap::Face& fa : a) {
        const float overlap = ap::iou(fa.detection.box, fb.detection.box);
        if (overlap > best) best = overlap, match = &fa;
      }
      if (match == nullptr) {
        ++unmatched;
        std::printf("%s: face of %.0f px (score %.2f) found only at full size\n", file.c_str(),
                    fb.quality.face_size, fb.detection.score);
        continue;
      }
      ++faces;
      const float size = fb.quality.face_size;
      const ap::Box& x = match->detection.box;
      const ap::Box& y = fb.detection.box;
      const double corner = std::max({std::abs(x.x1 - y.x1), std::abs(x.y1 - y.y1), std::abs(x.x2 - y.x2),
                                      std::abs(x.y2 - y.y2)}) / size;
      const double cosine = ap::cosine_similarity(match->embedding, fb.embedding);
      worst_corner = std::max(worst_corner, corner);
      min_cosine = std::min(min_cosine, cosine);
      sum_cosine += cosine;
      if (cosine < 0.95) std::printf("%s: %.0f px face, cosine %.4f, box corner %.3f of its size\n", file.c_str(), size, cosine, corner);
    }
  }
  std::printf("%zu JPEGs, %d decoded reduced; %d faces matched, %d found only at full size; cosine to the full-size "
              "pipeline min %.4f mean %.4f; box corners within %.3f of the face size\n",
              files.size(), photos_reduced, faces, unmatched, min_cosine, sum_cosine / std::max(1, faces), worst_corner);
  EXPECT_GE(photos_reduced, 20);
  EXPECT_GE(faces, 60);
  EXPECT_LE(unmatched, 2);
  EXPECT_GT(min_cosine, 0.9);
  EXPECT_GT(sum_cosine / faces, 0.98);
  EXPECT_LT(worst_corner, 0.1);
}

TEST(Photo, ReducedDecodingKeepsLabelledPairsApart) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  REQUIRE_SHARED(shared_model("paddle_mobilefacenet128.onnx"));
  REQUIRE_SHARED(shared_face("deepface/pairs.csv"));
  const std::string det = shared_model("scrfd_500m_bnkps.onnx"), rec = shared_model("paddle_mobilefacenet128.onnx");
  const auto pairs = arcforge::data::read_pair_list(shared_face("deepface/pairs.csv"));
  struct Figures {
    double same_mean = 0, different_mean = 0, same_min = 1, different_max = -1;
  };
  auto measure = [&](bool reduced_decoding) {
    const ap::FaceAnalyzer analyzer(det, rec, paddle_options(reduced_decoding));
    std::vector<std::vector<float>> embeddings;
    for (const auto& file : pairs.files) embeddings.push_back(analyzer.analyze_largest(analyzer.load_photo(file)).embedding);
    Figures f;
    int same = 0, different = 0;
    for (size_t p = 0; p < pairs.pairs.size(); ++p) {
      const double c = ap::cosine_similarity(embeddings[pairs.pairs[p].first], embeddings[pairs.pairs[p].second]);
      if (pairs.same[p]) {
        f.same_mean += c, ++same, f.same_min = std::min(f.same_min, c);
      } else {
        f.different_mean += c, ++different, f.different_max = std::max(f.different_max, c);
      }
    }
    f.same_mean /= same;
    f.different_mean /= different;
    std::printf("%s decode: same pairs mean %.4f min %.4f, different pairs mean %.4f max %.4f\n",
                reduced_decoding ? "reduced" : "full-size", f.same_mean, f.same_min, f.different_mean, f.different_max);
    return f;
  };
  const Figures whole = measure(false), reduced = measure(true);
  // The reduced crops are the same faces, low-passed instead of aliased: no worse a separation.
  EXPECT_GT(reduced.same_min, reduced.different_max);
  EXPECT_GT(reduced.same_mean - reduced.different_mean, whole.same_mean - whole.different_mean - 0.01);
}

TEST(Photo, OrientationAndReductionTogetherKeepCoordinatesExact) {
  // A blob at a known place of the upright photo (odd sizes: partial blocks at the stored image's
  // far edges), stored turned as each EXIF orientation says, tagged, decoded at 1/4 and turned
  // upright: its centroid maps back onto the upright place.
  const int upright_width = 1603, upright_height = 1201;
  const double cx = 1001.3, cy = 402.7, sigma = 8;
  for (int orientation = 1; orientation <= 8; ++orientation) {
    const bool swap = orientation >= 5;
    const int stored_width = swap ? upright_height : upright_width, stored_height = swap ? upright_width : upright_height;
    // Where the blob sits in the stored image: the upright (x, y) of each stored pixel, per the
    // EXIF specification (the inverse of the turn the tag asks for).
    auto upright_of = [&](int sx, int sy) -> std::pair<double, double> {
      switch (orientation) {
        case 2: return {stored_width - 1 - sx, sy};
        case 3: return {stored_width - 1 - sx, stored_height - 1 - sy};
        case 4: return {sx, stored_height - 1 - sy};
        case 5: return {sy, sx};
        case 6: return {stored_height - 1 - sy, sx};
        case 7: return {stored_height - 1 - sy, stored_width - 1 - sx};
        case 8: return {sy, stored_width - 1 - sx};
        default: return {sx, sy};
      }
    };
    ai::Image stored(stored_width, stored_height, 3);
    for (int y = 0; y < stored_height; ++y) {
      for (int x = 0; x < stored_width; ++x) {
        const auto [ux, uy] = upright_of(x, y);
        const double r2 = (ux - cx) * (ux - cx) + (uy - cy) * (uy - cy);
        const auto v = static_cast<uint8_t>(std::lround(250 * std::exp(-r2 / (2 * sigma * sigma))));
        for (int c = 0; c < 3; ++c) stored.at(x, y, c) = v;
      }
    }
    std::string jpeg = ai::encode_jpeg(stored, 98, ai::ChromaSubsampling::s444);
    if (orientation > 1) jpeg = with_exif_orientation(jpeg, orientation);
    ASSERT_EQ(ai::jpeg_exif_orientation(jpeg), orientation);
    const ap::Photo photo = ap::Photo::decode(std::make_shared<const std::string>(jpeg), "blob.jpg", 2, orientation, {});
    ASSERT_EQ(photo.full_width, upright_width) << orientation;
    ASSERT_EQ(photo.full_height, upright_height) << orientation;
    ASSERT_EQ(photo.pixels.width, ai::reduced_size(upright_width, 2)) << orientation;
    const ap::Point2 guess = photo.to_pixels({static_cast<float>(cx), static_cast<float>(cy)});
    const double reach = 6 * sigma / 4;
    double sum = 0, sx = 0, sy = 0;
    for (int y = static_cast<int>(guess.y - reach); y <= static_cast<int>(guess.y + reach); ++y) {
      for (int x = static_cast<int>(guess.x - reach); x <= static_cast<int>(guess.x + reach); ++x) {
        const double v = photo.pixels.at(x, y, 0);
        sum += v, sx += v * x, sy += v * y;
      }
    }
    const ap::Point2 back = photo.to_full({static_cast<float>(sx / sum), static_cast<float>(sy / sum)});
    // Without the offset on reversed axes: 0.25 reduced pixels = 1 full pixel off on some of them.
    EXPECT_NEAR(back.x, cx, 0.25) << "orientation " << orientation;
    EXPECT_NEAR(back.y, cy, 0.25) << "orientation " << orientation;
  }
}

// The same with a PNG's eXIf chunk, which cv2.imread also applies (OpenCV >= 4.5.2): img49 at 1/4,
// stored turned a quarter counter-clockwise, tagged 6.
TEST(Photo, SidewaysPngIsTurnedUprightByItsExifChunk) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  REQUIRE_SHARED(shared_face("deepface/img49.jpg"));
  const ai::Image upright = ai::decode_reduced(arcforge::read_file(shared_face("deepface/img49.jpg")), "img49.jpg", 2);
  const std::string png = with_png_exif_orientation(ai::encode_png(ai::apply_orientation(upright, 8)), 6);
  ASSERT_EQ(ai::exif_orientation(png), 6);
  const std::string det = shared_model("scrfd_500m_bnkps.onnx");
  ap::AnalyzerOptions as_stored_options = paddle_options(true);
  as_stored_options.apply_exif_orientation = false;
  const ap::FaceAnalyzer analyzer(det, "", paddle_options(true)), as_stored(det, "", as_stored_options);
  const ap::Photo turned = analyzer.decode_photo(png, "sideways.png");
  ASSERT_EQ(turned.full_width, upright.width);
  ASSERT_EQ(turned.full_height, upright.height);
  EXPECT_EQ(turned.pixels.pixels, upright.pixels);  // a lossless file turned back exactly
  const std::vector<ap::Face> expected = analyzer.detect(upright), found = analyzer.detect(turned);
  ASSERT_EQ(expected.size(), 1u);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NEAR(found[0].detection.box.x1, expected[0].detection.box.x1, 0.01);
  EXPECT_NEAR(found[0].detection.landmarks[0].y, expected[0].detection.landmarks[0].y, 0.01);
  EXPECT_EQ(as_stored.decode_photo(png, "sideways.png").full_width, upright.height);  // taken as stored
}

TEST(Photo, SidewaysPhoneStylePhotoIsTurnedUprightLikeOpenCv) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  REQUIRE_SHARED(shared_face("deepface/img49.jpg"));
  if (std::system("command -v jpegtran > /dev/null 2>&1") != 0) GTEST_SKIP() << "SKIPPED: jpegtran not installed";
  const ScratchDir dir;
  const std::string sideways = sideways_img49(dir), source = shared_face("deepface/img49.jpg");
  ASSERT_FALSE(sideways.empty());
  const std::string bytes = arcforge::read_file(sideways);
  ASSERT_EQ(ai::jpeg_exif_orientation(bytes), 6);

  ap::AnalyzerOptions as_stored_options = paddle_options(true);
  as_stored_options.apply_exif_orientation = false;
  const std::string det = shared_model("scrfd_500m_bnkps.onnx");
  const ap::FaceAnalyzer analyzer(det, "", paddle_options(true)), as_stored(det, "", as_stored_options);
  const std::vector<ap::Face> expected = analyzer.detect(analyzer.load_photo(source));
  const ap::Photo turned = analyzer.decode_photo(bytes, "sideways.jpg");
  EXPECT_EQ(turned.full_width, 4352);
  const std::vector<ap::Face> found = analyzer.detect(turned);
  ASSERT_EQ(expected.size(), 1u);
  ASSERT_EQ(found.size(), 1u);
  const float size = expected[0].quality.face_size;
  EXPECT_NEAR(found[0].detection.box.x1, expected[0].detection.box.x1, 0.02 * size);
  EXPECT_NEAR(found[0].detection.box.y1, expected[0].detection.box.y1, 0.02 * size);
  EXPECT_NEAR(found[0].detection.landmarks[0].x, expected[0].detection.landmarks[0].x, 0.02 * size);
  // Taken as stored, the face lies on its side: where the detector finds it at all, the eyes are
  // one above the other rather than side by side.
  const ap::Photo stored = as_stored.decode_photo(bytes, "sideways.jpg");
  EXPECT_EQ(stored.full_width, 2903);
  const std::vector<ap::Face> sideways_faces = as_stored.detect(stored);
  std::printf("taken as stored: %zu face(s) found\n", sideways_faces.size());
  for (const ap::Face& f : sideways_faces) {
    const auto& l = f.detection.landmarks;
    EXPECT_GT(std::abs(l[0].y - l[1].y), std::abs(l[0].x - l[1].x));
  }
}
