// PNG through libspng: any bit depth and colour type in, 8-bit RGB out; 8-bit gray or RGB out.
#include <spng.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "arcforge/common/error.hpp"
#include "codec_internal.hpp"

namespace arcforge::image {
namespace {

struct SpngDeleter {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};
using SpngContext = std::unique_ptr<spng_ctx, SpngDeleter>;

// PNG chunk lengths are at most 2^31 - 1; spng takes its limits as 32-bit values.
constexpr uint64_t kPngMax = 0x7fffffffu;
// Metadata spng keeps in memory (text, ICC profile, EXIF): generous for real files, small next to
// the pixels.
constexpr uint64_t kMetadataCacheLimit = 32ull << 20;

std::string spng_problem(int code) {
  if (code == SPNG_IO_EOF) return "truncated PNG (the data ends early)";
  return std::string("corrupt PNG (") + spng_strerror(code) + ")";
}

}  // namespace

namespace detail {

Image decode_png(std::string_view bytes, const std::string& name, const DecodeLimits& limits) {
  SpngContext ctx(spng_ctx_new(0));
  if (!ctx) throw Error("cannot create a libspng decoder");
  const auto dimension_limit = static_cast<uint32_t>(std::min(limits.max_pixels, kPngMax));
  const auto chunk_limit = static_cast<size_t>(std::min(limits.max_bytes, kPngMax));
  const auto cache_limit = static_cast<size_t>(std::min(limits.max_bytes, kMetadataCacheLimit));
  spng_set_image_limits(ctx.get(), dimension_limit, dimension_limit);
  spng_set_chunk_limits(ctx.get(), chunk_limit, cache_limit);
  spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size());

  spng_ihdr ihdr{};
  int code = spng_get_ihdr(ctx.get(), &ihdr);
  if (code == SPNG_EUSER_WIDTH || code == SPNG_EUSER_HEIGHT) {
    // One side alone is over max_pixels, so the area is too.
    fail(name, "PNG image is too large: one side is over " + std::to_string(dimension_limit) +
                   " pixels, the limit (DecodeLimits::max_pixels) is " + std::to_string(limits.max_pixels));
  }
  if (code != 0) fail(name, "bad PNG header: " + spng_problem(code));
  check_pixel_limit(ihdr.width, ihdr.height, "PNG", name, limits);

  Image out(static_cast<int>(ihdr.width), static_cast<int>(ihdr.height), 3);
  size_t decoded_size = 0;
  code = spng_decoded_image_size(ctx.get(), SPNG_FMT_RGB8, &decoded_size);
  if (code != 0) fail(name, spng_problem(code));
  if (decoded_size != out.pixels.size()) fail(name, "PNG decoder reports an unexpected image size");
  // No flags: alpha and tRNS are dropped (not composited), 16-bit samples keep their high byte,
  // both as OpenCV's imread(IMREAD_COLOR) does.
  code = spng_decode_image(ctx.get(), out.pixels.data(), out.pixels.size(), SPNG_FMT_RGB8, 0);
  if (code != 0) fail(name, spng_problem(code));
  return out;
}

}  // namespace detail

std::string encode_png(const Image& image) {
  detail::check_encodable(image, "PNG");
  SpngContext ctx(spng_ctx_new(SPNG_CTX_ENCODER));
  if (!ctx) throw Error("cannot create a libspng encoder");
  spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(image.width);
  ihdr.height = static_cast<uint32_t>(image.height);
  ihdr.bit_depth = 8;
  ihdr.color_type = image.channels == 1 ? SPNG_COLOR_TYPE_GRAYSCALE : SPNG_COLOR_TYPE_TRUECOLOR;
  int code = spng_set_ihdr(ctx.get(), &ihdr);
  if (code == 0) {
    code = spng_encode_image(ctx.get(), image.pixels.data(), image.pixels.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  }
  if (code != 0) throw Error(std::string("PNG encoding failed: ") + spng_strerror(code));
  size_t size = 0;
  void* buffer = spng_get_png_buffer(ctx.get(), &size, &code);
  std::unique_ptr<void, decltype(&std::free)> owned(buffer, &std::free);
  if (!buffer || code != 0) throw Error(std::string("PNG encoding failed: ") + spng_strerror(code));
  return std::string(static_cast<const char*>(buffer), size);
}

}  // namespace arcforge::image
