#include "arcforge/image/codec.hpp"

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "codec_internal.hpp"

namespace arcforge::image {
namespace detail {

void fail(const std::string& name, const std::string& what) { throw InputError(file_message(name, what)); }

void check_pixel_limit(uint64_t width, uint64_t height, const char* format, const std::string& name,
                       const DecodeLimits& limits) {
  if (width == 0 || height == 0) {
    fail(name, std::string(format) + " header says the image is " + std::to_string(width) + "x" +
                   std::to_string(height) + " (empty)");
  }
  // Both factors are below 2^32, so the product cannot overflow 64 bits.
  const uint64_t pixels = width * height;
  if (pixels > limits.max_pixels) {
    fail(name, std::string(format) + " image is too large: " + std::to_string(width) + "x" +
                   std::to_string(height) + " = " + std::to_string(pixels) + " pixels, over the limit of " +
                   std::to_string(limits.max_pixels) + " (DecodeLimits::max_pixels)");
  }
}

void check_encodable(const Image& image, const char* format) {
  if (image.width <= 0 || image.height <= 0) {
    throw Error(std::string("cannot encode an empty image as ") + format);
  }
  if (image.channels != 1 && image.channels != 3) {
    throw Error(std::string("cannot encode a ") + std::to_string(image.channels) + "-channel image as " + format +
                " (1 or 3 channels)");
  }
  const size_t expected = static_cast<size_t>(image.height) * image.row_bytes();
  if (image.pixels.size() != expected) {
    throw Error(std::string("cannot encode as ") + format + ": the pixel buffer holds " +
                std::to_string(image.pixels.size()) + " bytes, a " + std::to_string(image.width) + "x" +
                std::to_string(image.height) + "x" + std::to_string(image.channels) + " image needs " +
                std::to_string(expected));
  }
}

}  // namespace detail

namespace {

bool starts_with(std::string_view bytes, size_t offset, std::string_view magic) {
  return bytes.size() >= offset + magic.size() && bytes.substr(offset, magic.size()) == magic;
}

// Names formats we recognise but do not decode, and common non-image files, so the error says
// what the file really is.
std::string describe_unknown(std::string_view bytes) {
  if (starts_with(bytes, 0, "GIF8")) return "GIF images are not supported";
  if (starts_with(bytes, 0, "BM")) return "BMP images are not supported";
  if (starts_with(bytes, 0, std::string_view("II*\0", 4)) || starts_with(bytes, 0, std::string_view("MM\0*", 4))) {
    return "TIFF images are not supported";
  }
  if (starts_with(bytes, 4, "ftyp")) return "HEIF/AVIF/MP4 files are not supported";
  if (starts_with(bytes, 0, "version https://git-lfs")) return "this is a Git LFS pointer, not the image itself";
  std::string hex;
  for (size_t i = 0; i < bytes.size() && i < 8; ++i) {
    char byte[4];
    std::snprintf(byte, sizeof byte, "%s%02x", i ? " " : "", static_cast<unsigned char>(bytes[i]));
    hex += byte;
  }
  return "unknown image format (first bytes: " + hex + ")";
}

}  // namespace

Format sniff_format(std::string_view bytes) {
  if (starts_with(bytes, 0, "\xFF\xD8\xFF")) return Format::jpeg;
  if (starts_with(bytes, 0, "\x89PNG\r\n\x1A\n")) return Format::png;
  if (starts_with(bytes, 0, "RIFF") && starts_with(bytes, 8, "WEBP")) return Format::webp;
  return Format::unknown;
}

const char* format_name(Format format) {
  switch (format) {
    case Format::jpeg: return "JPEG";
    case Format::png: return "PNG";
    case Format::webp: return "WebP";
    case Format::unknown: break;
  }
  return "unknown";
}

namespace {

void check_input_size(std::string_view bytes, const std::string& name_for_errors, const DecodeLimits& limits) {
  if (bytes.empty()) detail::fail(name_for_errors, "empty input (0 bytes), not an image");
  if (bytes.size() > limits.max_bytes) {
    detail::fail(name_for_errors, "input is too large: " + std::to_string(bytes.size()) +
                                      " bytes, over the limit of " + std::to_string(limits.max_bytes) +
                                      " (DecodeLimits::max_bytes)");
  }
}

}  // namespace

Image decode_reduced(std::string_view bytes, const std::string& name_for_errors, int eighths,
                     const DecodeLimits& limits) {
  reduced_size(1, eighths);  // validates eighths
  if (eighths == 8) return decode(bytes, name_for_errors, limits);
  check_input_size(bytes, name_for_errors, limits);
  if (sniff_format(bytes) != Format::jpeg) {
    throw ConfigError(name_for_errors + ": only JPEGs can be decoded reduced (" + std::to_string(eighths) +
                      "/8 asked), this is " + format_name(sniff_format(bytes)));
  }
  return detail::decode_jpeg(bytes, name_for_errors, limits, eighths);
}

Image decode(std::string_view bytes, const std::string& name_for_errors, const DecodeLimits& limits) {
  check_input_size(bytes, name_for_errors, limits);
  switch (sniff_format(bytes)) {
    case Format::jpeg: return detail::decode_jpeg(bytes, name_for_errors, limits);
    case Format::png: return detail::decode_png(bytes, name_for_errors, limits);
    case Format::webp: return detail::decode_webp(bytes, name_for_errors, limits);
    case Format::unknown: break;
  }
  detail::fail(name_for_errors, describe_unknown(bytes) + "; expected JPEG, PNG or WebP");
}

std::string read_image_file(const std::string& path, const DecodeLimits& limits) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) detail::fail(path, "is a directory, not an image");
  const auto size = fs::file_size(path, ec);
  // When the size is unknown (ec set), read_file reports why the file cannot be read.
  if (!ec && size > limits.max_bytes) {
    detail::fail(path, "file is too large: " + std::to_string(size) + " bytes, over the limit of " +
                           std::to_string(limits.max_bytes) + " (DecodeLimits::max_bytes)");
  }
  return read_file(path);
}

Image decode_file(const std::string& path, const DecodeLimits& limits) {
  return decode(read_image_file(path, limits), path, limits);
}

void write_png(const std::string& path, const Image& image) { write_file_atomically(path, encode_png(image)); }

}  // namespace arcforge::image
