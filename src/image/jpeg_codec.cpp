// JPEG through the TurboJPEG API of libjpeg-turbo 2.1 (Debian bookworm): tjDecompressHeader3 gives
// the size and colour space before anything is allocated, tjDecompress2 converts to RGB.
#include <turbojpeg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "arcforge/common/error.hpp"
#include "codec_internal.hpp"

namespace arcforge::image {
namespace {

struct TjDeleter {
  void operator()(void* handle) const { tjDestroy(handle); }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

// One handle per thread and direction: creating one costs more than decoding a 112x112 face, and a
// handle stays usable after a failed call.
tjhandle thread_handle(bool compress) {
  thread_local TjHandle decompressor;
  thread_local TjHandle compressor;
  TjHandle& handle = compress ? compressor : decompressor;
  if (!handle) {
    handle.reset(compress ? tjInitCompress() : tjInitDecompress());
    if (!handle) throw Error(std::string("cannot initialise libturbojpeg: ") + tjGetErrorStr2(nullptr));
  }
  return handle.get();
}

// Adobe (Photoshop) CMYK JPEGs store inverted ink values, 255 = no ink; nearly every CMYK JPEG in
// the wild is one. Same conversion as OpenCV's and PIL's: R = C' * K' / 255.
void inverted_cmyk_to_rgb(const std::vector<uint8_t>& cmyk, Image& out) {
  const size_t pixels = static_cast<size_t>(out.width) * static_cast<size_t>(out.height);
  for (size_t p = 0; p < pixels; ++p) {
    const unsigned k = cmyk[4 * p + 3];
    for (int c = 0; c < 3; ++c) {
      out.pixels[3 * p + c] = static_cast<uint8_t>((cmyk[4 * p + c] * k + 127) / 255);
    }
  }
}

struct JpegHeader {
  int width = 0, height = 0, colorspace = 0;
};

JpegHeader read_header(tjhandle tj, std::string_view bytes, const std::string& name) {
  JpegHeader h;
  int subsampling = 0;
  if (tjDecompressHeader3(tj, reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<unsigned long>(bytes.size()), &h.width, &h.height, &subsampling,
                          &h.colorspace) != 0) {
    detail::fail(name, std::string("bad or truncated JPEG header (") + tjGetErrorStr2(tj) + ")");
  }
  // libjpeg treats running out of data as an end marker, so a file cut before its frame header
  // "succeeds" here with no size.
  if (h.width <= 0 || h.height <= 0) detail::fail(name, "bad or truncated JPEG header (the data ends before the image size)");
  return h;
}

}  // namespace

int reduced_size(int full, int eighths) {
  if (eighths < 1 || eighths > 8) {
    throw ConfigError("a reduced decode takes 1..8 eighths of the full size, got " + std::to_string(eighths));
  }
  return static_cast<int>((static_cast<int64_t>(full) * eighths + 7) / 8);
}

std::optional<ImageSize> jpeg_size(std::string_view bytes, const std::string& name_for_errors) {
  if (sniff_format(bytes) != Format::jpeg) return std::nullopt;
  const JpegHeader h = read_header(thread_handle(false), bytes, name_for_errors);
  return ImageSize{h.width, h.height};
}

namespace detail {

Image decode_jpeg(std::string_view bytes, const std::string& name, const DecodeLimits& limits, int eighths) {
  tjhandle tj = thread_handle(false);
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto size = static_cast<unsigned long>(bytes.size());
  const JpegHeader header = read_header(tj, bytes, name);
  check_pixel_limit(static_cast<uint64_t>(header.width), static_cast<uint64_t>(header.height), "JPEG", name, limits);

  // Accurate integer IDCT (the libjpeg default that OpenCV and PIL use). Warnings such as
  // "Premature end of JPEG file" stop the decode: libjpeg would otherwise pad a truncated image
  // with gray and call it a success. LIMITSCANS caps progressive scans (a known CPU bomb).
  const int flags = TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
  // Asking for exactly the M/8 size makes tjDecompress2 pick the M/8 scaling factor.
  const int width = reduced_size(header.width, eighths), height = reduced_size(header.height, eighths);
  Image out(width, height, 3);
  const bool cmyk = header.colorspace == TJCS_CMYK || header.colorspace == TJCS_YCCK;
  int status = 0;
  if (cmyk) {
    std::vector<uint8_t> ink(static_cast<size_t>(width) * static_cast<size_t>(height) * 4);
    status = tjDecompress2(tj, data, size, ink.data(), width, 0, height, TJPF_CMYK, flags);
    if (status == 0) inverted_cmyk_to_rgb(ink, out);
  } else {
    status = tjDecompress2(tj, data, size, out.pixels.data(), width, 0, height, TJPF_RGB, flags);
  }
  if (status != 0) fail(name, std::string("corrupt or truncated JPEG data (") + tjGetErrorStr2(tj) + ")");
  return out;
}

}  // namespace detail

std::string encode_jpeg(const Image& image, int quality, ChromaSubsampling subsampling) {
  detail::check_encodable(image, "JPEG");
  if (quality < 1 || quality > 100) {
    throw ConfigError("JPEG quality must be in 1..100, got " + std::to_string(quality));
  }
  const bool gray = image.channels == 1;
  const int pixel_format = gray ? TJPF_GRAY : TJPF_RGB;
  const int samples = gray ? TJSAMP_GRAY : subsampling == ChromaSubsampling::s444 ? TJSAMP_444 : TJSAMP_420;
  tjhandle tj = thread_handle(true);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  const int status = tjCompress2(tj, image.pixels.data(), image.width, 0, image.height, pixel_format, &buffer, &size,
                                 samples, quality, TJFLAG_ACCURATEDCT);
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(buffer, tjFree);
  if (status != 0) throw Error(std::string("JPEG encoding failed: ") + tjGetErrorStr2(tj));
  return std::string(reinterpret_cast<const char*>(buffer), size);
}

}  // namespace arcforge::image
