// Image decoding and encoding against references that do not come from the code under test:
// - JPEG files assembled here byte by byte from flat 8x8 blocks, whose decoded values follow from
//   the JPEG standard (DC-only block, all-ones quantisation) and the JFIF colour equations;
// - PNG files assembled here byte by byte (stored deflate blocks, CRC-32 and Adler-32 by hand);
// - the real photos in /work/shared/faces, with sizes read by hand from their SOF / IHDR headers;
// - djpeg (libjpeg-turbo-progs), when installed, for byte-exact pixels of real JPEGs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/image/image.hpp"
#include "ppm_reader.hpp"

namespace ai = arcforge::image;
namespace fs = std::filesystem;
using arcforge::image::test::read_ppm;

namespace {

// ---------------------------------------------------------------- shared helpers ----------------

std::string faces_dir() {
  if (const char* env = std::getenv("ARCFORGE_SHARED_DIR")) return std::string(env) + "/faces";
  return std::string(ARCFORGE_SOURCE_DIR) + "/../shared/faces";
}

std::string byte(int value) { return std::string(1, static_cast<char>(value & 0xFF)); }
std::string be16(uint32_t v) { return byte(v >> 8) + byte(v); }
std::string be32(uint32_t v) { return be16(v >> 16) + be16(v & 0xFFFF); }
std::string le16(uint32_t v) { return byte(v) + byte(v >> 8); }
std::string le32(uint32_t v) { return le16(v & 0xFFFF) + le16(v >> 16); }

// Runs `body`, which must throw InputError whose message names `name` and contains `fragment`.
void expect_input_error(const std::function<void()>& body, const std::string& name, const std::string& fragment) {
  try {
    body();
    ADD_FAILURE() << "expected InputError containing '" << fragment << "'";
  } catch (const arcforge::InputError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(name), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
}

ai::Image smooth_gradient(int width, int height) {
  ai::Image image(width, height, 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at(x, y, 0) = static_cast<uint8_t>(40 + 160 * x / (width - 1));
      image.at(x, y, 1) = static_cast<uint8_t>(30 + 180 * y / (height - 1));
      image.at(x, y, 2) = static_cast<uint8_t>(200 - 100 * (x + y) / (width + height - 2));
    }
  }
  return image;
}

ai::Image random_image(int width, int height, int channels, uint32_t seed) {
  ai::Image image(width, height, channels);
  std::mt19937 rng(seed);
  for (auto& v : image.pixels) v = static_cast<uint8_t>(rng() & 0xFF);
  return image;
}

double mean_abs_error(const ai::Image& a, const ai::Image& b) {
  EXPECT_EQ(a.pixels.size(), b.pixels.size());
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size() && i < b.pixels.size(); ++i) sum += std::abs(a.pixels[i] - b.pixels[i]);
  return sum / static_cast<double>(a.pixels.size());
}

// ---------------------------------------------------------------- hand-made JPEG ----------------

// MSB-first bit writer for entropy-coded data: pads the last byte with 1s and stuffs 0x00 after
// every 0xFF, as the JPEG standard (F.1.2.3) requires.
class BitWriter {
 public:
  void put(uint32_t bits, int count) {
    for (int i = count - 1; i >= 0; --i) put_bit((bits >> i) & 1u);
  }
  std::string finish() {
    while (filled_ != 0) put_bit(1);
    return out_;
  }

 private:
  void put_bit(uint32_t bit) {
    current_ = (current_ << 1) | bit;
    if (++filled_ == 8) {
      out_ += byte(static_cast<int>(current_));
      if (current_ == 0xFF) out_ += byte(0);
      current_ = 0;
      filled_ = 0;
    }
  }
  std::string out_;
  uint32_t current_ = 0;
  int filled_ = 0;
};

// The standard luminance DC table of Annex K.3 (code lengths per length 1..16, symbols 0..11).
const std::array<uint8_t, 16> kDcCounts = {0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};

struct Code {
  uint32_t bits;
  int length;
};

// Canonical Huffman codes (Annex C) of the DC table above.
std::map<int, Code> dc_codes() {
  std::map<int, Code> codes;
  uint32_t code = 0;
  int symbol = 0;
  for (int length = 1; length <= 16; ++length) {
    for (int i = 0; i < kDcCounts[length - 1]; ++i) codes[symbol++] = {code++, length};
    code <<= 1;
  }
  return codes;
}

std::string jpeg_segment(int marker, const std::string& payload) {
  return byte(0xFF) + byte(marker) + be16(static_cast<uint32_t>(payload.size() + 2)) + payload;
}

// SOI .. SOS of a baseline JPEG: all-ones quantisation table, DC table K.3, an AC table whose only
// symbol is end-of-block (code "0"). components: 1 gray, 3 YCbCr (JFIF), 4 CMYK (Adobe, transform
// 0). luma_factor 2 samples Y 2x2 per chroma sample (4:2:0).
std::string jpeg_headers(int width, int height, int components, int luma_factor) {
  std::string out = byte(0xFF) + byte(0xD8);
  if (components == 4) {
    out += jpeg_segment(0xEE, "Adobe" + be16(100) + be16(0) + be16(0) + byte(0));
  } else {
    out += jpeg_segment(0xE0, std::string("JFIF", 5) + byte(1) + byte(1) + byte(0) + be16(1) + be16(1) + byte(0) +
                                  byte(0));
  }
  out += jpeg_segment(0xDB, byte(0) + std::string(64, '\x01'));
  std::string frame = byte(8) + be16(height) + be16(width) + byte(components);
  for (int c = 0; c < components; ++c) {
    const int sampling = c == 0 ? luma_factor * 0x11 : 0x11;
    frame += byte(c + 1) + byte(sampling) + byte(0);
  }
  out += jpeg_segment(0xC0, frame);
  std::string tables = byte(0x00);
  for (uint8_t n : kDcCounts) tables += byte(n);
  for (int s = 0; s <= 11; ++s) tables += byte(s);
  tables += byte(0x10) + byte(1) + std::string(15, '\0') + byte(0x00);
  out += jpeg_segment(0xC4, tables);
  std::string scan = byte(components);
  for (int c = 0; c < components; ++c) scan += byte(c + 1) + byte(0x00);
  scan += byte(0) + byte(63) + byte(0);
  out += jpeg_segment(0xDA, scan);
  return out;
}

// A JPEG whose every block is flat: level(c, bx, by) is the value of component c in block
// (bx, by) of that component's own block grid. With all AC zero and quantiser 1, a block of level
// v has DC = 8 * (v - 128); the IDCT of a DC-only block is DC / 8 and the level shift adds 128, so
// the decoder must give back exactly v.
std::string flat_block_jpeg(int mcus_x, int mcus_y, int components, int luma_factor,
                            const std::function<int(int, int, int)>& level) {
  const int mcu_pixels = 8 * luma_factor;
  std::string out = jpeg_headers(mcus_x * mcu_pixels, mcus_y * mcu_pixels, components, luma_factor);
  const auto codes = dc_codes();
  std::vector<int> predictor(components, 0);
  BitWriter bits;
  auto put_block = [&](int c, int bx, int by) {
    const int dc = 8 * (level(c, bx, by) - 128);
    const int diff = dc - predictor[c];
    predictor[c] = dc;
    int category = 0;
    while ((std::abs(diff) >> category) != 0) ++category;
    bits.put(codes.at(category).bits, codes.at(category).length);
    if (category > 0) bits.put(static_cast<uint32_t>(diff >= 0 ? diff : diff + (1 << category) - 1), category);
    bits.put(0, 1);  // end of block
  };
  for (int my = 0; my < mcus_y; ++my) {
    for (int mx = 0; mx < mcus_x; ++mx) {
      for (int c = 0; c < components; ++c) {
        const int f = c == 0 ? luma_factor : 1;
        for (int v = 0; v < f; ++v) {
          for (int h = 0; h < f; ++h) put_block(c, mx * f + h, my * f + v);
        }
      }
    }
  }
  return out + bits.finish() + byte(0xFF) + byte(0xD9);
}

// JFIF (ITU-T T.871) YCbCr -> RGB, rounded and clamped.
std::array<int, 3> jfif_rgb(int y, int cb, int cr) {
  auto clamp = [](double v) { return static_cast<int>(std::lround(std::min(255.0, std::max(0.0, v)))); };
  return {clamp(y + 1.402 * (cr - 128)), clamp(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)),
          clamp(y + 1.772 * (cb - 128))};
}

// ---------------------------------------------------------------- hand-made PNG -----------------

uint32_t crc32(const std::string& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char ch : data) {
    crc ^= ch;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint32_t adler32(const std::string& data) {
  uint32_t a = 1, b = 0;
  for (unsigned char ch : data) {
    a = (a + ch) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

std::string png_chunk(const std::string& type, const std::string& data) {
  return be32(static_cast<uint32_t>(data.size())) + type + data + be32(crc32(type + data));
}

// A zlib stream of stored (uncompressed) deflate blocks, RFC 1950/1951.
std::string zlib_stored(const std::string& raw) {
  std::string out = byte(0x78) + byte(0x01);
  size_t offset = 0;
  do {
    const size_t n = std::min<size_t>(65535, raw.size() - offset);
    const bool last = offset + n == raw.size();
    out += byte(last ? 1 : 0) + le16(static_cast<uint32_t>(n)) + le16(static_cast<uint32_t>(~n & 0xFFFF));
    out += raw.substr(offset, n);
    offset += n;
  } while (offset < raw.size());
  return out + be32(adler32(raw));
}

const std::string kPngSignature("\x89PNG\r\n\x1A\n", 8);

std::string png_ihdr(uint32_t width, uint32_t height, int bit_depth, int color_type) {
  return png_chunk("IHDR", be32(width) + be32(height) + byte(bit_depth) + byte(color_type) + byte(0) + byte(0) +
                               byte(0));
}

// `scanlines` holds each row as its filter-type byte followed by the filtered bytes.
std::string hand_png(uint32_t width, uint32_t height, int bit_depth, int color_type, const std::string& scanlines,
                     const std::string& chunks_before_idat = "") {
  return kPngSignature + png_ihdr(width, height, bit_depth, color_type) + chunks_before_idat +
         png_chunk("IDAT", zlib_stored(scanlines)) + png_chunk("IEND", "");
}

void expect_rgb_row(const ai::Image& image, int y, const std::vector<std::array<int, 3>>& expected) {
  ASSERT_EQ(image.channels, 3);
  ASSERT_EQ(image.width, static_cast<int>(expected.size()));
  for (int x = 0; x < image.width; ++x) {
    for (int c = 0; c < 3; ++c) EXPECT_EQ(image.at(x, y, c), expected[x][c]) << "x=" << x << " y=" << y << " c=" << c;
  }
}

// ---------------------------------------------------------------- header parsing by hand --------

struct Size {
  int width = 0, height = 0;
};

// Walks JPEG marker segments to the first SOFn; a reference for the decoded size.
Size jpeg_sof_size(const std::string& b) {
  size_t p = 2;
  while (p + 9 < b.size()) {
    if (static_cast<unsigned char>(b[p]) != 0xFF) return {};
    const int marker = static_cast<unsigned char>(b[p + 1]);
    if (marker == 0xFF) {
      ++p;
      continue;
    }
    const size_t length = (static_cast<unsigned char>(b[p + 2]) << 8) | static_cast<unsigned char>(b[p + 3]);
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      auto u16 = [&](size_t at) {
        return (static_cast<unsigned char>(b[at]) << 8) | static_cast<unsigned char>(b[at + 1]);
      };
      return {u16(p + 7), u16(p + 5)};
    }
    p += 2 + length;
  }
  return {};
}

Size png_ihdr_size(const std::string& b) {
  auto u32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
    return static_cast<int>(v);
  };
  return {u32(16), u32(20)};
}

}  // namespace

// ================================================================= JPEG against the standard =====

TEST(ImageCodecJpeg, FlatGrayBlocksDecodeToExactLevels) {
  // 3x2 blocks, each a different level, including the extremes.
  const int levels[2][3] = {{0, 50, 128}, {200, 255, 17}};
  const std::string jpeg =
      flat_block_jpeg(3, 2, 1, 1, [&](int, int bx, int by) { return levels[by][bx]; });
  ASSERT_EQ(ai::sniff_format(jpeg), ai::Format::jpeg);
  const ai::Image image = ai::decode(jpeg, "flat_gray.jpg");
  ASSERT_EQ(image.width, 24);
  ASSERT_EQ(image.height, 16);
  ASSERT_EQ(image.channels, 3);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 24; ++x) {
      for (int c = 0; c < 3; ++c) ASSERT_EQ(image.at(x, y, c), levels[y / 8][x / 8]) << x << "," << y << "," << c;
    }
  }
}

TEST(ImageCodecJpeg, FlatYCbCrBlocksFollowJfifColourEquations) {
  // 2x2 blocks of (Y, Cb, Cr): roughly red, green, blue and a neutral gray.
  const int ycc[2][2][3] = {{{76, 85, 255}, {150, 44, 21}}, {{29, 255, 107}, {200, 128, 128}}};
  const std::string jpeg = flat_block_jpeg(2, 2, 3, 1, [&](int c, int bx, int by) { return ycc[by][bx][c]; });
  const ai::Image image = ai::decode(jpeg, "flat_444.jpg");
  ASSERT_EQ(image.width, 16);
  ASSERT_EQ(image.height, 16);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 16; ++x) {
      const auto* block = ycc[y / 8][x / 8];
      const auto rgb = jfif_rgb(block[0], block[1], block[2]);
      // The decoder's fixed-point colour conversion may round each term on its own: +-1.
      for (int c = 0; c < 3; ++c) ASSERT_NEAR(image.at(x, y, c), rgb[c], 1) << x << "," << y << "," << c;
    }
  }
  EXPECT_EQ(image.at(12, 12, 0), 200);  // neutral block: exact
  EXPECT_EQ(image.at(12, 12, 2), 200);
}

TEST(ImageCodecJpeg, Subsampled420McuOrderAndFlatChroma) {
  // One 16x16 MCU: four luma blocks of different levels, one flat Cb and Cr block each.
  const int luma[2][2] = {{30, 90}, {160, 230}};
  const int cb = 100, cr = 170;
  const std::string jpeg = flat_block_jpeg(1, 1, 3, 2, [&](int c, int bx, int by) {
    return c == 0 ? luma[by][bx] : c == 1 ? cb : cr;
  });
  const ai::Image image = ai::decode(jpeg, "flat_420.jpg");
  ASSERT_EQ(image.width, 16);
  ASSERT_EQ(image.height, 16);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 16; ++x) {
      const auto rgb = jfif_rgb(luma[y / 8][x / 8], cb, cr);
      for (int c = 0; c < 3; ++c) ASSERT_NEAR(image.at(x, y, c), rgb[c], 1) << x << "," << y << "," << c;
    }
  }
}

TEST(ImageCodecJpeg, AdobeCmykIsConvertedAsInvertedInk) {
  // Stored values are inverted ink (255 = none): R = C' * K' / 255 and so on.
  const int cmyk[2][4] = {{255, 128, 0, 255}, {200, 100, 50, 128}};
  const std::string jpeg = flat_block_jpeg(2, 1, 4, 1, [&](int c, int bx, int) { return cmyk[bx][c]; });
  const ai::Image image = ai::decode(jpeg, "flat_cmyk.jpg");
  ASSERT_EQ(image.width, 16);
  ASSERT_EQ(image.height, 8);
  for (int bx = 0; bx < 2; ++bx) {
    for (int c = 0; c < 3; ++c) {
      const double expected = cmyk[bx][c] * cmyk[bx][3] / 255.0;
      EXPECT_NEAR(image.at(bx * 8 + 3, 4, c), expected, 0.51) << "block " << bx << " channel " << c;
    }
  }
}

TEST(ImageCodecJpeg, MatchesDjpegByteForByteOnRealPhotos) {
  if (std::system("command -v djpeg > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "SKIPPED: djpeg not installed (apt-get install libjpeg-turbo-progs)";
  }
  const std::string dir = faces_dir();
  if (!fs::exists(dir)) GTEST_SKIP() << "SKIPPED: shared faces not found at " << dir;
  const fs::path out_dir = fs::temp_directory_path() / ("arcforge_djpeg_" + std::to_string(::getpid()));
  fs::create_directories(out_dir);
  // Baseline 4:2:0 photos and one progressive JPEG (selfie-many-people.jpg).
  for (const char* relative : {"insightface/t1.jpg", "insightface/mask_green.jpg", "deepface/img5.jpg",
                               "deepface/selfie-many-people.jpg"}) {
    const std::string path = dir + "/" + relative;
    if (!fs::exists(path)) {
      ADD_FAILURE() << "missing " << path;
      continue;
    }
    const std::string ppm = (out_dir / "out.ppm").string();
    const std::string command = "djpeg -dct int -ppm -outfile '" + ppm + "' '" + path + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    const ai::Image reference = read_ppm(ppm);
    const ai::Image ours = ai::decode_file(path);
    ASSERT_EQ(ours.width, reference.width) << path;
    ASSERT_EQ(ours.height, reference.height) << path;
    size_t differing = 0;
    for (size_t i = 0; i < ours.pixels.size(); ++i) differing += ours.pixels[i] != reference.pixels[i];
    EXPECT_EQ(differing, 0u) << path;
  }
  fs::remove_all(out_dir);
}

// ================================================================= PNG against the standard ======

TEST(ImageCodecPng, Gray8WithSubFilter) {
  // Row 0 unfiltered; row 1 uses the Sub filter: 40, 40+5, 45+5.
  const std::string scanlines = byte(0) + byte(10) + byte(20) + byte(30) + byte(1) + byte(40) + byte(5) + byte(5);
  const ai::Image image = ai::decode(hand_png(3, 2, 8, 0, scanlines), "gray8.png");
  ASSERT_EQ(image.height, 2);
  expect_rgb_row(image, 0, {{10, 10, 10}, {20, 20, 20}, {30, 30, 30}});
  expect_rgb_row(image, 1, {{40, 40, 40}, {45, 45, 45}, {50, 50, 50}});
}

TEST(ImageCodecPng, Gray1BitExpandsToBlackAndWhite) {
  const ai::Image image = ai::decode(hand_png(8, 1, 1, 0, byte(0) + byte(0b10110000)), "gray1.png");
  expect_rgb_row(image, 0, {{255, 255, 255}, {0, 0, 0}, {255, 255, 255}, {255, 255, 255}, {0, 0, 0}, {0, 0, 0},
                            {0, 0, 0}, {0, 0, 0}});
}

TEST(ImageCodecPng, SixteenBitKeepsTheHighByte) {
  // 0x12FF would round to 0x13 if scaled; the high byte (OpenCV's strip_16) is 0x12.
  const ai::Image gray = ai::decode(hand_png(2, 1, 16, 0, byte(0) + be16(0x12FF) + be16(0x0080)), "gray16.png");
  expect_rgb_row(gray, 0, {{0x12, 0x12, 0x12}, {0, 0, 0}});
  const ai::Image rgb =
      ai::decode(hand_png(1, 1, 16, 2, byte(0) + be16(0x0102) + be16(0xFF00) + be16(0x80FF)), "rgb16.png");
  expect_rgb_row(rgb, 0, {{1, 255, 128}});
}

TEST(ImageCodecPng, PaletteWithTransparencyGivesPaletteColours) {
  const std::string palette = png_chunk("PLTE", byte(255) + byte(0) + byte(0) + byte(0) + byte(255) + byte(0) +
                                                    byte(0) + byte(0) + byte(255));
  const std::string transparency = png_chunk("tRNS", byte(0));  // index 0 fully transparent: ignored
  const ai::Image image =
      ai::decode(hand_png(3, 1, 8, 3, byte(0) + byte(2) + byte(0) + byte(1), palette + transparency), "palette.png");
  expect_rgb_row(image, 0, {{0, 0, 255}, {255, 0, 0}, {0, 255, 0}});
}

TEST(ImageCodecPng, AlphaIsDroppedNotComposited) {
  const std::string row = byte(0) + byte(10) + byte(20) + byte(30) + byte(0) + byte(40) + byte(50) + byte(60) + byte(255);
  const ai::Image rgba = ai::decode(hand_png(2, 1, 8, 6, row), "rgba.png");
  expect_rgb_row(rgba, 0, {{10, 20, 30}, {40, 50, 60}});
  const ai::Image gray_alpha = ai::decode(hand_png(1, 1, 8, 4, byte(0) + byte(77) + byte(9)), "ga.png");
  expect_rgb_row(gray_alpha, 0, {{77, 77, 77}});
}

TEST(ImageCodecPng, BadCrcIsRejected) {
  std::string png = hand_png(3, 1, 8, 0, byte(0) + byte(1) + byte(2) + byte(3));
  png[8 + 8 + 3] ^= 0x01;  // a bit of the IHDR width, so its CRC no longer matches
  expect_input_error([&] { ai::decode(png, "badcrc.png"); }, "badcrc.png", "corrupt PNG");
}

// ================================================================= round trips ===================

TEST(ImageCodecRoundTrip, PngIsLosslessForRgbAndGray) {
  for (auto [w, h] : {std::pair{37, 23}, std::pair{1, 1}, std::pair{256, 3}}) {
    const ai::Image rgb = random_image(w, h, 3, 7u + w);
    const std::string png = ai::encode_png(rgb);
    ASSERT_EQ(ai::sniff_format(png), ai::Format::png);
    EXPECT_EQ(png_ihdr_size(png).width, w);
    EXPECT_EQ(png_ihdr_size(png).height, h);
    EXPECT_EQ(png[24], 8);  // bit depth
    EXPECT_EQ(png[25], 2);  // colour type truecolour
    const ai::Image back = ai::decode(png, "roundtrip.png");
    ASSERT_EQ(back.width, w);
    ASSERT_EQ(back.height, h);
    ASSERT_EQ(back.channels, 3);
    EXPECT_EQ(back.pixels, rgb.pixels);

    const ai::Image gray = random_image(w, h, 1, 99u + h);
    const std::string gray_png = ai::encode_png(gray);
    EXPECT_EQ(gray_png[25], 0);  // colour type grayscale
    const ai::Image gray_back = ai::decode(gray_png, "gray_roundtrip.png");
    ASSERT_EQ(gray_back.channels, 3);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        for (int c = 0; c < 3; ++c) ASSERT_EQ(gray_back.at(x, y, c), gray.at(x, y, 0));
      }
    }
  }
}

TEST(ImageCodecRoundTrip, JpegQuality95IsCloseOnASmoothGradient) {
  const ai::Image source = smooth_gradient(96, 64);
  const std::string jpeg444 = ai::encode_jpeg(source, 95, ai::ChromaSubsampling::s444);
  const std::string jpeg420 = ai::encode_jpeg(source, 95);
  ASSERT_EQ(ai::sniff_format(jpeg420), ai::Format::jpeg);
  EXPECT_EQ(jpeg_sof_size(jpeg420).width, 96);
  EXPECT_EQ(jpeg_sof_size(jpeg420).height, 64);
  const double error444 = mean_abs_error(ai::decode(jpeg444, "q95_444.jpg"), source);
  const double error420 = mean_abs_error(ai::decode(jpeg420, "q95_420.jpg"), source);
  EXPECT_LT(error444, 1.0);
  EXPECT_LT(error420, 1.5);
  // Quality means something: a quality-10 file is smaller and further off.
  const std::string jpeg10 = ai::encode_jpeg(source, 10);
  EXPECT_LT(jpeg10.size(), jpeg420.size());
  EXPECT_GT(mean_abs_error(ai::decode(jpeg10, "q10.jpg"), source), error420);
}

TEST(ImageCodecRoundTrip, GrayJpegDecodesToEqualChannels) {
  ai::Image gray(64, 40, 1);
  for (int y = 0; y < 40; ++y) {
    for (int x = 0; x < 64; ++x) gray.at(x, y, 0) = static_cast<uint8_t>(2 * x + y);
  }
  const std::string jpeg = ai::encode_jpeg(gray, 95);
  const ai::Image back = ai::decode(jpeg, "gray.jpg");
  ASSERT_EQ(back.channels, 3);
  double error = 0;
  for (int y = 0; y < 40; ++y) {
    for (int x = 0; x < 64; ++x) {
      ASSERT_EQ(back.at(x, y, 0), back.at(x, y, 1));
      ASSERT_EQ(back.at(x, y, 1), back.at(x, y, 2));
      error += std::abs(back.at(x, y, 0) - gray.at(x, y, 0));
    }
  }
  EXPECT_LT(error / (64 * 40), 1.0);
}

TEST(ImageCodecRoundTrip, WritePngIsAtomicAndReadable) {
  const fs::path dir = fs::temp_directory_path() / ("arcforge_write_png_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string path = (dir / "sub" / "face.png").string();
  const ai::Image image = random_image(20, 10, 3, 5);
  ai::write_png(path, image);
  ai::write_png(path, image);  // replaces in place
  EXPECT_EQ(ai::decode_file(path).pixels, image.pixels);
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir / "sub")) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 1);  // no temp file left behind
  fs::remove_all(dir);
}

TEST(ImageCodecRoundTrip, EncoderRejectsBadArguments) {
  const ai::Image image = smooth_gradient(8, 8);
  EXPECT_THROW(ai::encode_jpeg(image, 0), arcforge::ConfigError);
  EXPECT_THROW(ai::encode_jpeg(image, 101), arcforge::ConfigError);
  EXPECT_THROW(ai::encode_png(ai::Image()), arcforge::Error);
  ai::Image short_buffer = image;
  short_buffer.pixels.pop_back();
  EXPECT_THROW(ai::encode_png(short_buffer), arcforge::Error);
  EXPECT_THROW(ai::Image(4, 4, 2), std::invalid_argument);
}

TEST(ImageCodecImage, AtIsRowMajorInterleaved) {
  ai::Image image(3, 2, 3);
  image.at(2, 1, 2) = 7;
  image.at(1, 0, 0) = 9;
  EXPECT_EQ(image.pixels.back(), 7);
  EXPECT_EQ(image.pixels[3], 9);
  EXPECT_EQ(image.row_bytes(), 9u);
}

// ================================================================= errors ========================

TEST(ImageCodecErrors, EmptyInput) {
  expect_input_error([] { ai::decode("", "empty.jpg"); }, "empty.jpg", "empty input");
}

TEST(ImageCodecErrors, RandomBytesAreAnUnknownFormat) {
  std::mt19937 rng(3);
  std::string noise(1000, '\0');
  for (auto& ch : noise) ch = static_cast<char>(rng() & 0xFF);
  noise[0] = 'x';
  expect_input_error([&] { ai::decode(noise, "noise.bin"); }, "noise.bin", "unknown image format");
  expect_input_error([] { ai::decode(std::string("GIF89a\x01\0\x01\0", 10), "anim.gif"); }, "anim.gif",
                     "GIF images are not supported");
  expect_input_error([] { ai::decode("version https://git-lfs.github.com/spec/v1\n", "lfs.jpg"); }, "lfs.jpg",
                     "Git LFS pointer");
}

TEST(ImageCodecErrors, TruncatedJpeg) {
  const std::string jpeg = ai::encode_jpeg(random_image(64, 64, 3, 11), 90);
  expect_input_error([&] { ai::decode(jpeg.substr(0, jpeg.size() / 2), "half.jpg"); }, "half.jpg",
                     "corrupt or truncated JPEG data");
  expect_input_error([&] { ai::decode(jpeg.substr(0, 40), "head.jpg"); }, "head.jpg", "truncated JPEG header");
  expect_input_error([&] { ai::decode(jpeg.substr(0, 3), "magic_only.jpg"); }, "magic_only.jpg", "JPEG header");
}

TEST(ImageCodecErrors, TruncatedPng) {
  const std::string png = ai::encode_png(random_image(64, 64, 3, 12));
  expect_input_error([&] { ai::decode(png.substr(0, png.size() / 2), "half.png"); }, "half.png", "truncated PNG");
  expect_input_error([&] { ai::decode(png.substr(0, 20), "head.png"); }, "head.png", "bad PNG header");
}

TEST(ImageCodecErrors, PngBombIsRejectedFromTheHeader) {
  // 100000 x 100000 RGB would need 30 GB; nothing but the header exists.
  const std::string png = kPngSignature + png_ihdr(100000, 100000, 8, 2) + png_chunk("IEND", "");
  expect_input_error([&] { ai::decode(png, "bomb.png"); }, "bomb.png",
                     "too large: 100000x100000 = 10000000000 pixels, over the limit of 64000000");
  // A side alone over the limit is caught too.
  ai::DecodeLimits tiny;
  tiny.max_pixels = 1000;
  expect_input_error([&] { ai::decode(hand_png(2000, 1, 8, 0, byte(0) + std::string(2000, '\0')), "wide.png", tiny); },
                     "wide.png", "too large");
}

TEST(ImageCodecErrors, JpegBombIsRejectedFromTheHeader) {
  const std::string jpeg = jpeg_headers(60000, 60000, 3, 1) + byte(0xFF) + byte(0xD9);
  expect_input_error([&] { ai::decode(jpeg, "bomb.jpg"); }, "bomb.jpg", "JPEG image is too large: 60000x60000");
}

TEST(ImageCodecErrors, WebpBombIsRejectedFromTheHeader) {
  if (!ai::webp_supported()) GTEST_SKIP() << "SKIPPED: built without libwebp";
  // Lossless (VP8L) header of a 16384x16384 image: signature 0x2F, then 14-bit width-1 and
  // height-1, alpha bit and 3-bit version, little-endian.
  const std::string vp8l = byte(0x2F) + le32(0x3FFFu | (0x3FFFu << 14)) + byte(0);
  const std::string webp = "RIFF" + le32(4 + 8 + 6) + "WEBP" + "VP8L" + le32(5) + vp8l;
  ASSERT_EQ(ai::sniff_format(webp), ai::Format::webp);
  expect_input_error([&] { ai::decode(webp, "bomb.webp"); }, "bomb.webp", "WebP image is too large: 16384x16384");
}

TEST(ImageCodecErrors, ByteLimitAndFileProblems) {
  ai::DecodeLimits limits;
  limits.max_bytes = 100;
  const std::string png = ai::encode_png(random_image(32, 32, 3, 1));
  expect_input_error([&] { ai::decode(png, "big.png", limits); }, "big.png", "DecodeLimits::max_bytes");
  const fs::path dir = fs::temp_directory_path() / ("arcforge_decode_file_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "big.png").string();
  arcforge::write_file_atomically(path, png);
  expect_input_error([&] { ai::decode_file(path, limits); }, path, "file is too large");
  expect_input_error([&] { ai::decode_file(dir.string()); }, dir.string(), "is a directory");
  expect_input_error([&] { ai::decode_file((dir / "missing.jpg").string()); }, "missing.jpg", "cannot open");
  fs::remove_all(dir);
}

// ================================================================= real photos ===================

TEST(ImageCodecRealFiles, EveryDeepfaceAndInsightfaceImageDecodes) {
  const std::string dir = faces_dir();
  if (!fs::exists(dir)) GTEST_SKIP() << "SKIPPED: shared faces not found at " << dir;
  int decoded = 0;
  for (const char* sub : {"deepface", "insightface"}) {
    for (const auto& entry : fs::directory_iterator(dir + "/" + sub)) {
      const std::string ext = entry.path().extension().string();
      if (ext != ".jpg" && ext != ".png") continue;
      const std::string path = entry.path().string();
      const std::string bytes = arcforge::read_file(path);
      const ai::Image image = ai::decode(bytes, path);
      ASSERT_EQ(image.channels, 3) << path;
      ASSERT_EQ(image.pixels.size(), static_cast<size_t>(image.width) * image.height * 3) << path;
      Size header;
      switch (ai::sniff_format(bytes)) {
        case ai::Format::jpeg: header = jpeg_sof_size(bytes); break;
        case ai::Format::png: header = png_ihdr_size(bytes); break;
        default: header = {image.width, image.height}; break;  // WebP: checked below
      }
      EXPECT_EQ(image.width, header.width) << path;
      EXPECT_EQ(image.height, header.height) << path;
      // A photo, not a flat fill: the channel values spread (mask_white.jpg, the flattest, has 9.5).
      double sum = 0, sum_sq = 0;
      for (uint8_t v : image.pixels) {
        sum += v;
        sum_sq += double(v) * v;
      }
      const double n = static_cast<double>(image.pixels.size());
      EXPECT_GT(std::sqrt(sum_sq / n - (sum / n) * (sum / n)), 5.0) << path;
      ++decoded;
    }
  }
  EXPECT_GE(decoded, 60);
  EXPECT_EQ(ai::decode_file(dir + "/insightface/Tom_Hanks_54745.png").width, 112);
  const ai::Image t1 = ai::decode_file(dir + "/insightface/t1.jpg");
  EXPECT_EQ(t1.width, 1280);
  EXPECT_EQ(t1.height, 886);
}

TEST(ImageCodecRealFiles, WebpNamedJpgIsSniffedByContent) {
  const std::string path = faces_dir() + "/deepface/img47.jpg";
  if (!fs::exists(path)) GTEST_SKIP() << "SKIPPED: " << path << " not found";
  const std::string bytes = arcforge::read_file(path);
  EXPECT_EQ(ai::sniff_format(bytes), ai::Format::webp);
  if (!ai::webp_supported()) {
    expect_input_error([&] { ai::decode(bytes, path); }, path, "WebP support was not built in");
    return;
  }
  const ai::Image image = ai::decode(bytes, path);
  EXPECT_EQ(image.width, 1350);
  EXPECT_EQ(image.height, 1800);
  // Truncating the real file is caught, not padded.
  expect_input_error([&] { ai::decode(bytes.substr(0, bytes.size() / 2), "half.webp"); }, "half.webp", "WebP");
}

TEST(ImageCodecRealFiles, LfwSampleIs250SquareRgb) {
  const std::string dir = faces_dir() + "/lfw/images";
  if (!fs::exists(dir)) GTEST_SKIP() << "SKIPPED: " << dir << " not found";
  int index = 0, checked = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file() || index++ % 40 != 0) continue;
    const ai::Image image = ai::decode_file(entry.path().string());
    EXPECT_EQ(image.width, 250) << entry.path();
    EXPECT_EQ(image.height, 250) << entry.path();
    ++checked;
  }
  EXPECT_GT(checked, 100);
}
