// EXIF orientation: the tag read from hand-built EXIF segments (both byte orders, malformed ones),
// the eight turns on a tiny image against the EXIF specification's pictures, and against jpegtran's
// lossless rotations of a real JPEG.
#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <string>
#include <vector>

#include "../pipeline/shared_data.hpp"  // ScratchDir
#include "arcforge/common/atomic_file.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/image/orientation.hpp"

#ifdef ARCFORGE_TEST_WEBP_ENCODE
#include <webp/encode.h>
#endif

namespace ai = arcforge::image;
using arcforge::pipeline::test::png_chunk;
using arcforge::pipeline::test::ScratchDir;
using arcforge::pipeline::test::with_png_chunk;

namespace {

std::string u16(uint32_t v, bool big) {
  const char hi = static_cast<char>((v >> 8) & 0xFF), lo = static_cast<char>(v & 0xFF);
  return big ? std::string{hi, lo} : std::string{lo, hi};
}
std::string u32(uint32_t v, bool big) {
  return big ? u16(v >> 16, true) + u16(v & 0xFFFF, true) : u16(v & 0xFFFF, false) + u16(v >> 16, false);
}

// EXIF's TIFF structure whose IFD0 holds a width tag, then the orientation tag (type SHORT unless
// `type` says otherwise).
std::string exif_tiff(int orientation, bool big_endian, uint32_t type = 3) {
  std::string tiff = std::string(big_endian ? "MM" : "II") + u16(42, big_endian) + u32(8, big_endian);
  tiff += u16(2, big_endian);                                                             // 2 entries
  tiff += u16(0x0100, big_endian) + u16(4, big_endian) + u32(1, big_endian) + u32(640, big_endian);  // ImageWidth
  tiff += u16(0x0112, big_endian) + u16(type, big_endian) + u32(1, big_endian) +
          u16(static_cast<uint32_t>(orientation), big_endian) + u16(0, big_endian);
  tiff += u32(0, big_endian);  // no next IFD
  return tiff;
}

// A JPEG's APP1 EXIF segment holding it.
std::string exif_segment(int orientation, bool big_endian, uint32_t type = 3) {
  const std::string payload = std::string("Exif\0\0", 6) + exif_tiff(orientation, big_endian, type);
  return std::string("\xFF\xE1", 2) + u16(static_cast<uint32_t>(payload.size() + 2), true) + payload;
}

// `jpeg` with `segment` right after SOI.
std::string with_segment(const std::string& jpeg, const std::string& segment) { return jpeg.substr(0, 2) + segment + jpeg.substr(2); }

ai::Image numbered(int width, int height) {
  ai::Image image(width, height, 1);
  for (int i = 0; i < width * height; ++i) image.pixels[static_cast<size_t>(i)] = static_cast<uint8_t>(i + 1);
  return image;
}

std::vector<int> rows(const ai::Image& image) {
  return std::vector<int>(image.pixels.begin(), image.pixels.end());
}

}  // namespace

TEST(ExifOrientation, ReadFromEitherByteOrderAfterOtherSegments) {
  const std::string jpeg = ai::encode_jpeg(ai::Image(16, 8, 3), 90);  // starts with a JFIF APP0
  ASSERT_EQ(static_cast<unsigned char>(jpeg[20]), 0xFF);                // SOI (2) + APP0 (18)
  EXPECT_EQ(ai::jpeg_exif_orientation(jpeg), 1);
  for (int orientation = 1; orientation <= 8; ++orientation) {
    for (const bool big : {true, false}) {
      // After the encoder's APP0: the walk has to skip a segment first.
      const std::string tagged = jpeg.substr(0, 20) + exif_segment(orientation, big) + jpeg.substr(20);
      EXPECT_EQ(ai::jpeg_exif_orientation(tagged), orientation) << (big ? "MM " : "II ") << orientation;
      EXPECT_EQ(ai::decode(tagged, "tagged.jpg").width, 16);  // the decoder skips the segment
    }
  }
}

TEST(ExifOrientation, MalformedOrAbsentTagsMeanAsStored) {
  const std::string jpeg = ai::encode_jpeg(ai::Image(16, 8, 3), 90);
  EXPECT_EQ(ai::jpeg_exif_orientation(with_segment(jpeg, exif_segment(0, true))), 1);
  EXPECT_EQ(ai::jpeg_exif_orientation(with_segment(jpeg, exif_segment(9, true))), 1);
  EXPECT_EQ(ai::jpeg_exif_orientation(with_segment(jpeg, exif_segment(6, true, /*type=LONG*/ 4))), 1);
  const std::string good = exif_segment(6, false);
  for (size_t cut = 0; cut < good.size(); ++cut) {  // every truncation of the segment
    std::string bad = good.substr(0, cut);
    EXPECT_EQ(ai::jpeg_exif_orientation(jpeg.substr(0, 2) + bad), 1) << cut;
  }
  std::string wrong_magic = good;
  wrong_magic[10 + 2] = 43;  // TIFF magic 43 instead of 42 (little-endian)
  EXPECT_EQ(ai::jpeg_exif_orientation(with_segment(jpeg, wrong_magic)), 1);
  std::string far_ifd = good;
  far_ifd[10 + 4] = 0x7F;  // IFD0 offset past the end
  EXPECT_EQ(ai::jpeg_exif_orientation(with_segment(jpeg, far_ifd)), 1);
  EXPECT_EQ(ai::jpeg_exif_orientation(ai::encode_png(ai::Image(4, 4, 3))), 1);
  EXPECT_EQ(ai::jpeg_exif_orientation(""), 1);
  EXPECT_EQ(ai::jpeg_exif_orientation(std::string("\xFF\xD8", 2)), 1);
}

// PNG's eXIf chunk (PNG 1.5 extensions; OpenCV's imread applies it since 4.5.2): the tag read from
// it in either byte order, libpng decoding the tagged file as before, the chunk ignored after the
// image data (where a reader has already started decoding) and when malformed.
TEST(ExifOrientation, ReadFromAPngsExifChunk) {
  const ai::Image stored = numbered(3, 2);
  const std::string png = ai::encode_png(stored);
  ASSERT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(ai::png_exif_orientation(png), 1);
  for (const bool big : {false, true}) {
    for (int orientation = 1; orientation <= 8; ++orientation) {
      const std::string tagged = with_png_chunk(png, png_chunk("eXIf", exif_tiff(orientation, big)));
      EXPECT_EQ(ai::png_exif_orientation(tagged), orientation) << (big ? "MM " : "II ") << orientation;
      EXPECT_EQ(ai::exif_orientation(tagged), orientation);
      EXPECT_EQ(ai::decode(tagged, "tagged.png").pixels, ai::decode(png, "plain.png").pixels);
    }
  }
  // Some writers keep JPEG's "Exif\0\0" in front of the TIFF header.
  EXPECT_EQ(ai::png_exif_orientation(with_png_chunk(png, png_chunk("eXIf", std::string("Exif\0\0", 6) + exif_tiff(6, true)))), 6);
  // After IDAT: not read. Before IEND, the file's last chunk, is after IDAT.
  const std::string after_data = png.substr(0, png.size() - 12) + png_chunk("eXIf", exif_tiff(6, true)) + png.substr(png.size() - 12);
  EXPECT_EQ(ai::png_exif_orientation(after_data), 1);
  // A chunk that claims more bytes than the file has; a malformed TIFF; other chunks before it.
  const std::string tagged = with_png_chunk(png, png_chunk("eXIf", exif_tiff(8, false)));
  EXPECT_EQ(ai::png_exif_orientation(tagged.substr(0, 40)), 1);
  EXPECT_EQ(ai::png_exif_orientation(with_png_chunk(png, png_chunk("eXIf", "MM\0*"))), 1);
  EXPECT_EQ(ai::png_exif_orientation(with_png_chunk(tagged, png_chunk("tEXt", std::string("Comment\0hello", 13)))), 8);
  for (size_t cut = 0; cut < tagged.size(); cut += 3) (void)ai::png_exif_orientation(tagged.substr(0, cut));
  // A JPEG's reader does not take a PNG, nor the other way round.
  EXPECT_EQ(ai::jpeg_exif_orientation(tagged), 1);
  EXPECT_EQ(ai::png_exif_orientation(with_segment(ai::encode_jpeg(ai::Image(8, 8, 3), 90), exif_segment(6, true))), 1);
  EXPECT_EQ(ai::exif_orientation(with_segment(ai::encode_jpeg(ai::Image(8, 8, 3), 90), exif_segment(6, true))), 6);
}

// A WebP chunk: FourCC, little-endian size, data, a pad byte after an odd size.
std::string webp_chunk(const std::string& fourcc, const std::string& data) {
  return fourcc + u32(static_cast<uint32_t>(data.size()), false) + data + (data.size() % 2 ? std::string(1, '\0') : "");
}

// The extended WebP format around `image_chunk` (a VP8L or VP8 chunk) of a width x height picture:
// VP8X with the EXIF flag, the image, then the EXIF chunk holding `tiff`, as the specification
// orders them.
std::string extended_webp(const std::string& image_chunk, int width, int height, const std::string& tiff) {
  const auto u24 = [](uint32_t v) { return u32(v, false).substr(0, 3); };
  const std::string vp8x = std::string("\x08\0\0\0", 4) + u24(static_cast<uint32_t>(width - 1)) +
                           u24(static_cast<uint32_t>(height - 1));
  const std::string body = "WEBP" + webp_chunk("VP8X", vp8x) + image_chunk + webp_chunk("EXIF", tiff);
  return "RIFF" + u32(static_cast<uint32_t>(body.size()), false) + body;
}

// A WebP's EXIF chunk, in either byte order, with or without JPEG's "Exif\0\0" in front, after
// an image chunk of odd size (its pad byte skipped); truncated, cut short by the RIFF size,
// malformed or absent: 1.
TEST(ExifOrientation, ReadFromAWebpsExifChunk) {
  const std::string image = webp_chunk("VP8L", std::string("\x2f\0\0\0\0", 5));  // odd: padded
  for (const bool big : {false, true}) {
    for (int orientation = 1; orientation <= 8; ++orientation) {
      const std::string tagged = extended_webp(image, 3, 2, exif_tiff(orientation, big));
      EXPECT_EQ(ai::webp_exif_orientation(tagged), orientation) << (big ? "MM " : "II ") << orientation;
      EXPECT_EQ(ai::exif_orientation(tagged), orientation);
      EXPECT_EQ(ai::jpeg_exif_orientation(tagged), 1);
      EXPECT_EQ(ai::png_exif_orientation(tagged), 1);
    }
  }
  EXPECT_EQ(ai::webp_exif_orientation(extended_webp(image, 3, 2, std::string("Exif\0\0", 6) + exif_tiff(6, true))), 6);
  const std::string tagged = extended_webp(image, 3, 2, exif_tiff(8, false));
  for (size_t cut = 0; cut < tagged.size(); ++cut) EXPECT_EQ(ai::webp_exif_orientation(tagged.substr(0, cut)), 1) << cut;
  std::string short_riff = tagged;  // the RIFF size ends the file before the EXIF chunk
  short_riff.replace(4, 4, u32(static_cast<uint32_t>(4 + 18 + image.size()), false));
  EXPECT_EQ(ai::webp_exif_orientation(short_riff), 1);
  EXPECT_EQ(ai::webp_exif_orientation(extended_webp(image, 3, 2, "MM\0*")), 1);
  EXPECT_EQ(ai::webp_exif_orientation(extended_webp(image, 3, 2, exif_tiff(9, true))), 1);
  EXPECT_EQ(ai::webp_exif_orientation("RIFF" + u32(4 + image.size(), false) + "WEBP" + image), 1);
  EXPECT_EQ(ai::webp_exif_orientation(ai::encode_png(ai::Image(4, 4, 3))), 1);
  EXPECT_EQ(ai::webp_exif_orientation(""), 1);
}

#ifdef ARCFORGE_TEST_WEBP_ENCODE
// A real lossless WebP, rewrapped in the extended format with an EXIF chunk: libwebp decodes it to
// the same pixels, and the tag turns them upright.
TEST(ExifOrientation, ATaggedWebpDecodesAndTurnsUpright) {
  if (!ai::webp_supported()) GTEST_SKIP() << "SKIPPED: built without libwebp";
  ai::Image stored(3, 2, 3);
  for (size_t i = 0; i < stored.pixels.size(); ++i) stored.pixels[i] = static_cast<uint8_t>(10 * i + 5);
  uint8_t* encoded = nullptr;
  const size_t size = WebPEncodeLosslessRGB(stored.pixels.data(), 3, 2, 9, &encoded);
  ASSERT_GT(size, 20u);
  const std::string simple(reinterpret_cast<const char*>(encoded), size);
  WebPFree(encoded);
  ASSERT_EQ(simple.substr(12, 4), "VP8L");
  const std::string tagged = extended_webp(simple.substr(12), 3, 2, exif_tiff(6, true));
  ASSERT_EQ(ai::exif_orientation(tagged), 6);
  const ai::Image decoded = ai::decode(tagged, "tagged.webp");
  EXPECT_EQ(decoded.pixels, stored.pixels);  // lossless, the extra chunks skipped
  const ai::Image upright = ai::apply_orientation(decoded, ai::exif_orientation(tagged));
  EXPECT_EQ(upright.width, 2);
  EXPECT_EQ(upright.height, 3);
  EXPECT_EQ(upright.pixels, ai::apply_orientation(stored, 6).pixels);
}
#endif

TEST(ExifOrientation, TurnsMatchTheSpecificationsPictures) {
  // Stored 3 x 2:   1 2 3      The EXIF specification's rows and columns for each orientation,
  //                 4 5 6      written out by hand.
  const ai::Image stored = numbered(3, 2);
  const std::array<std::vector<int>, 9> upright{{
      {},
      {1, 2, 3, 4, 5, 6},  // 1: as stored
      {3, 2, 1, 6, 5, 4},  // 2: mirrored left-right
      {6, 5, 4, 3, 2, 1},  // 3: turned 180
      {4, 5, 6, 1, 2, 3},  // 4: mirrored top-bottom
      {1, 4, 2, 5, 3, 6},  // 5: transposed (2 x 3)
      {4, 1, 5, 2, 6, 3},  // 6: turned 90 clockwise
      {6, 3, 5, 2, 4, 1},  // 7: transposed across the other diagonal
      {3, 6, 2, 5, 1, 4},  // 8: turned 90 counter-clockwise
  }};
  for (int orientation = 1; orientation <= 8; ++orientation) {
    const ai::Image turned = ai::apply_orientation(stored, orientation);
    EXPECT_EQ(turned.width, orientation >= 5 ? 2 : 3) << orientation;
    EXPECT_EQ(rows(turned), upright[static_cast<size_t>(orientation)]) << orientation;
  }
  EXPECT_EQ(rows(ai::apply_orientation(stored, 0)), upright[1]);
}

TEST(ExifOrientation, UndoesJpegtransLosslessTurns) {
  if (std::system("command -v jpegtran > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "SKIPPED: jpegtran not installed (apt-get install libjpeg-turbo-progs)";
  }
  // An upright 64 x 48 photo-like image (whole 16 x 16 MCUs, so every turn is exact), stored turned
  // the other way by jpegtran, tagged: decoding and applying the tag gives the upright image back.
  ai::Image upright(64, 48, 3);
  for (int y = 0; y < 48; ++y) {
    for (int x = 0; x < 64; ++x) {
      upright.at(x, y, 0) = static_cast<uint8_t>(4 * x);
      upright.at(x, y, 1) = static_cast<uint8_t>(5 * y);
      upright.at(x, y, 2) = static_cast<uint8_t>((x * y) % 256);
    }
  }
  const ScratchDir dir;
  const std::string source = dir.file("upright.jpg");
  arcforge::write_file_atomically(source, ai::encode_jpeg(upright, 95));
  const ai::Image reference = ai::decode(arcforge::read_file(source), "upright.jpg");
  // The jpegtran operation that stores an upright image under each tag (the inverse of the tag's turn).
  const std::array<std::string, 9> store{"", "", "-flip horizontal", "-rotate 180", "-flip vertical", "-transpose",
                                         "-rotate 270", "-transverse", "-rotate 90"};
  for (int orientation = 2; orientation <= 8; ++orientation) {
    const std::string stored_path = dir.file("stored.jpg");
    const std::string command = "jpegtran -perfect -copy none " + store[static_cast<size_t>(orientation)] +
                                " -outfile '" + stored_path + "' '" + source + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    const std::string tagged = with_segment(arcforge::read_file(stored_path), exif_segment(orientation, orientation % 2 == 0));
    ASSERT_EQ(ai::jpeg_exif_orientation(tagged), orientation);
    const ai::Image turned = ai::apply_orientation(ai::decode(tagged, "stored.jpg"), orientation);
    ASSERT_EQ(turned.width, reference.width) << orientation;
    ASSERT_EQ(turned.height, reference.height) << orientation;
    int worst = 0;
    for (size_t i = 0; i < turned.pixels.size(); ++i) worst = std::max(worst, std::abs(turned.pixels[i] - reference.pixels[i]));
    // Turning DCT blocks is exact; the integer IDCT's row and column passes round differently,
    // so a transposed block decodes within a level or two, not bit for bit.
    EXPECT_LE(worst, 3) << "orientation " << orientation;
  }
}
