// JPEG decoding below full size (image::decode_reduced): against djpeg -scale M/8 byte for byte, and
// against a box-filtered full decode, which is what the scaled inverse DCT approximates.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"
#include "../pipeline/shared_data.hpp"  // ScratchDir
#include "ppm_reader.hpp"

namespace ai = arcforge::image;
namespace fs = std::filesystem;
using arcforge::pipeline::test::ScratchDir;

namespace {

// Smooth shading plus edges and fine stripes: enough detail for the reduced IDCT to drop, not
// noise (whose box average says nothing about a photo).
ai::Image textured(int width, int height, bool gray = false) {
  ai::Image image(width, height, gray ? 1 : 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double shade = 0.5 + 0.35 * std::sin(x * 0.05) * std::cos(y * 0.07);
      const double stripes = (x / 3 + y / 5) % 2 ? 20 : -20;
      const double disc = std::hypot(x - width * 0.6, y - height * 0.4) < height * 0.25 ? 40 : 0;
      for (int c = 0; c < image.channels; ++c) {
        const double v = 255 * shade + stripes + disc - 30 * c;
        image.at(x, y, c) = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return image;
}

// The mean over each (8/eighths)-pixel square of the full decode: eighths must divide 8.
ai::Image box_reduce(const ai::Image& full, int eighths) {
  const int f = 8 / eighths;
  ai::Image out(ai::reduced_size(full.width, eighths), ai::reduced_size(full.height, eighths), full.channels);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      for (int c = 0; c < full.channels; ++c) {
        double sum = 0;
        int n = 0;
        for (int dy = 0; dy < f && y * f + dy < full.height; ++dy) {
          for (int dx = 0; dx < f && x * f + dx < full.width; ++dx, ++n) sum += full.at(x * f + dx, y * f + dy, c);
        }
        out.at(x, y, c) = static_cast<uint8_t>(std::lround(sum / n));
      }
    }
  }
  return out;
}

double mean_abs_difference(const ai::Image& a, const ai::Image& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  if (a.pixels.size() != b.pixels.size()) return 1e9;
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) sum += std::abs(a.pixels[i] - b.pixels[i]);
  return sum / static_cast<double>(a.pixels.size());
}

bool have_djpeg() { return std::system("command -v djpeg > /dev/null 2>&1") == 0; }

// djpeg's decode of `jpeg_path` at eighths/8, accurate integer IDCT, always RGB.
ai::Image djpeg_scaled(const std::string& jpeg_path, int eighths, const ScratchDir& scratch) {
  const std::string ppm = scratch.file("djpeg.ppm");
  const std::string command = "djpeg -dct int -rgb -scale " + std::to_string(eighths) + "/8 -ppm -outfile '" + ppm +
                              "' '" + jpeg_path + "'";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  return ai::test::read_ppm(ppm);
}

size_t differing_bytes(const ai::Image& a, const ai::Image& b) {
  if (a.width != b.width || a.height != b.height || a.pixels.size() != b.pixels.size()) return SIZE_MAX;
  size_t n = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) n += a.pixels[i] != b.pixels[i];
  return n;
}

std::string shared_faces() {
  if (const char* env = std::getenv("ARCFORGE_SHARED_DIR")) return std::string(env) + "/faces";
  return std::string(ARCFORGE_SOURCE_DIR) + "/../shared/faces";
}

}  // namespace

TEST(ReducedDecode, SizesFollowLibjpegRounding) {
  EXPECT_EQ(ai::reduced_size(4352, 2), 1088);
  EXPECT_EQ(ai::reduced_size(2903, 2), 726);  // 725.75 rounds up
  EXPECT_EQ(ai::reduced_size(203, 3), 77);    // 76.125
  EXPECT_EQ(ai::reduced_size(1, 1), 1);
  EXPECT_EQ(ai::reduced_size(640, 8), 640);
  EXPECT_THROW(ai::reduced_size(640, 0), arcforge::ConfigError);
  EXPECT_THROW(ai::reduced_size(640, 9), arcforge::ConfigError);

  const std::string jpeg = ai::encode_jpeg(textured(203, 157), 90);
  const auto size = ai::jpeg_size(jpeg, "t.jpg");
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(size->width, 203);
  EXPECT_EQ(size->height, 157);
  EXPECT_FALSE(ai::jpeg_size(ai::encode_png(textured(8, 8)), "t.png").has_value());
  try {
    ai::jpeg_size(jpeg.substr(0, 40), "cut.jpg");
    ADD_FAILURE() << "a JPEG cut inside its header must be refused";
  } catch (const arcforge::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.jpg"), std::string::npos) << e.what();
  }
}

TEST(ReducedDecode, MatchesDjpegScaleByteForByte) {
  if (!have_djpeg()) GTEST_SKIP() << "SKIPPED: djpeg not installed (apt-get install libjpeg-turbo-progs)";
  const ScratchDir scratch;
  struct Case {
    std::string name, bytes;
  };
  // Odd sizes (partial blocks at both edges), 4:2:0 and 4:4:4 chroma, and gray.
  const std::vector<Case> cases{{"420.jpg", ai::encode_jpeg(textured(203, 157), 90)},
                                {"444.jpg", ai::encode_jpeg(textured(203, 157), 90, ai::ChromaSubsampling::s444)},
                                {"gray.jpg", ai::encode_jpeg(textured(131, 77, /*gray=*/true), 90)}};
  for (const auto& c : cases) {
    const std::string path = scratch.file(c.name);
    arcforge::write_file_atomically(path, c.bytes);
    for (int eighths = 1; eighths <= 8; ++eighths) {
      const ai::Image ours = ai::decode_reduced(c.bytes, c.name, eighths);
      const ai::Image reference = djpeg_scaled(path, eighths, scratch);
      ASSERT_EQ(ours.width, reference.width) << c.name << " at " << eighths << "/8";
      ASSERT_EQ(ours.height, reference.height) << c.name << " at " << eighths << "/8";
      EXPECT_EQ(differing_bytes(ours, reference), 0u) << c.name << " at " << eighths << "/8";
    }
  }
}

TEST(ReducedDecode, RealPhotosMatchDjpegScale) {
  if (!have_djpeg()) GTEST_SKIP() << "SKIPPED: djpeg not installed (apt-get install libjpeg-turbo-progs)";
  const std::string dir = shared_faces();
  if (!fs::exists(dir)) GTEST_SKIP() << "SKIPPED: shared faces not found at " << dir;
  const ScratchDir scratch;
  // A 4352x2903 baseline photo, a 3061x4600 one and a progressive one.
  for (const char* relative : {"deepface/img49.jpg", "deepface/img40.jpg", "deepface/selfie-many-people.jpg"}) {
    const std::string path = dir + "/" + relative;
    ASSERT_TRUE(fs::exists(path)) << path;
    const std::string bytes = arcforge::read_file(path);
    for (int eighths : {1, 2, 4}) {
      const ai::Image ours = ai::decode_reduced(bytes, path, eighths);
      EXPECT_EQ(differing_bytes(ours, djpeg_scaled(path, eighths, scratch)), 0u) << path << " at " << eighths << "/8";
    }
  }
}

TEST(ReducedDecode, IsCloseToABoxFilteredFullDecode) {
  const std::string jpeg = ai::encode_jpeg(textured(256, 192), 95, ai::ChromaSubsampling::s444);
  const ai::Image full = ai::decode(jpeg, "t.jpg");
  for (int eighths : {4, 2, 1}) {
    const ai::Image reduced = ai::decode_reduced(jpeg, "t.jpg", eighths);
    const double difference = mean_abs_difference(reduced, box_reduce(full, eighths));
    // The scaled IDCT is a smoother low-pass than a box, so edges differ (0.16-0.23 levels on average here); a
    // half-pixel shift or a wrong scale would be tens of levels off on the stripes and the disc.
    EXPECT_LT(difference, 1.0) << eighths << "/8";
    RecordProperty("mean_abs_difference_" + std::to_string(eighths), std::to_string(difference));
  }
}

TEST(ReducedDecode, OnlyJpegsAreReducedAndLimitsApplyToTheFullSize) {
  const std::string png = ai::encode_png(textured(64, 48));
  EXPECT_EQ(ai::decode_reduced(png, "t.png", 8).width, 64);
  try {
    ai::decode_reduced(png, "t.png", 4);
    ADD_FAILURE() << "a PNG cannot be decoded reduced";
  } catch (const arcforge::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("t.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("PNG"), std::string::npos) << e.what();
  }
  const std::string jpeg = ai::encode_jpeg(textured(400, 300), 90);
  ai::DecodeLimits limits;
  limits.max_pixels = 100'000;  // under 400 x 300, over the 50 x 38 of a 1/8 decode
  try {
    ai::decode_reduced(jpeg, "big.jpg", 1, limits);
    ADD_FAILURE() << "the pixel limit must apply to the full size";
  } catch (const arcforge::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("big.jpg: JPEG image is too large: 400x300"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ai::decode_reduced(jpeg, "t.jpg", 0), arcforge::ConfigError);
  EXPECT_THROW(ai::decode_reduced(jpeg.substr(0, jpeg.size() / 2), "half.jpg", 2), arcforge::InputError);
}
