#pragma once
// Image files in and out without OpenCV: JPEG (libturbojpeg), PNG (libspng) and WebP (libwebp, when
// the build found it). The format is sniffed from the magic bytes, never from the file name.
// Every input is untrusted: sizes are checked from the header before any pixel buffer is allocated,
// and every failure is an InputError that names the file and the problem.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "arcforge/image/image.hpp"

namespace arcforge::image {

struct DecodeLimits {
  uint64_t max_pixels = 64'000'000;  // width * height; decompression bombs stop at the header
  uint64_t max_bytes = 256ull << 20;  // size of the encoded input
};

enum class Format { unknown, jpeg, png, webp };

Format sniff_format(std::string_view bytes);
const char* format_name(Format format);

// True when this build can decode WebP (libwebp was found at configure time).
bool webp_supported();

// Decodes to 3-channel RGB whatever the source: gray, palette, 16-bit, alpha (dropped, not
// composited), CMYK JPEG (taken as Adobe-inverted, as OpenCV and PIL do). EXIF orientation is not
// applied here (image/orientation.hpp has it; the face pipeline's Photo applies it). JPEG uses the accurate integer IDCT and smooth chroma upsampling, like OpenCV and PIL.
// Throws InputError "name_for_errors: ..." on an empty, truncated, corrupt, unknown or too large
// input.
Image decode(std::string_view bytes, const std::string& name_for_errors, const DecodeLimits& limits = {});

// Reads the file (refusing one over limits.max_bytes before reading it) and decodes it.
Image decode_file(const std::string& path, const DecodeLimits& limits = {});
// The file's bytes, with decode_file's checks (a directory, over limits.max_bytes) before reading.
std::string read_image_file(const std::string& path, const DecodeLimits& limits = {});

// Decoding below full size, for photos much larger than what is made of them (a detector's 640x640
// input, a 112x112 face): libjpeg-turbo's scaled inverse DCT turns each 8x8 block into M x M pixels
// (M = 1..8), skipping most of the decoding work and low-pass filtering as it goes, which is what
// PIL's Image.draft() and OpenCV's IMREAD_REDUCED_COLOR_2/4/8 do.
struct ImageSize {
  int width = 0;
  int height = 0;
};

// The size a JPEG's header declares, read without decoding; nullopt when `bytes` is not a JPEG.
// Throws InputError "name_for_errors: ..." on a JPEG whose header is bad or truncated.
std::optional<ImageSize> jpeg_size(std::string_view bytes, const std::string& name_for_errors);

// A dimension decoded at eighths / 8: ceil(full * eighths / 8), libjpeg's rounding.
int reduced_size(int full, int eighths);

// decode() at eighths / 8 of the full size (eighths in 1..8). Output pixel x covers the full-size
// pixels around (x + 0.5) * 8 / eighths - 0.5 (pixel centres aligned, like a box filter). Only
// JPEGs can be reduced: any other format with eighths < 8, or eighths outside 1..8, is a
// ConfigError. The pixel limit applies to the full size, since the entropy decoding still reads
// every block.
Image decode_reduced(std::string_view bytes, const std::string& name_for_errors, int eighths,
                     const DecodeLimits& limits = {});

enum class ChromaSubsampling { s420, s444 };

// Baseline JPEG of a 1- or 3-channel image; quality 1..100. 4:2:0 is the default of PIL and OpenCV.
std::string encode_jpeg(const Image& image, int quality = 95,
                        ChromaSubsampling subsampling = ChromaSubsampling::s420);

// Lossless 8-bit PNG (gray or RGB) of a 1- or 3-channel image.
std::string encode_png(const Image& image);

// encode_png written with write_file_atomically: readers never see a torn file.
void write_png(const std::string& path, const Image& image);

}  // namespace arcforge::image
