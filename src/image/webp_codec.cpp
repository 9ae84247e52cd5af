// WebP through libwebp, when the build found it (ARCFORGE_HAVE_WEBP); otherwise a clear error.
#include <string>

#include "codec_internal.hpp"

#if ARCFORGE_HAVE_WEBP
#include <webp/decode.h>
constexpr bool kHaveWebp = true;
#else
constexpr bool kHaveWebp = false;
#endif

namespace arcforge::image {

bool webp_supported() { return kHaveWebp; }

namespace detail {

#if ARCFORGE_HAVE_WEBP

Image decode_webp(std::string_view bytes, const std::string& name, const DecodeLimits& limits) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures features;
  const VP8StatusCode status = WebPGetFeatures(data, bytes.size(), &features);
  if (status == VP8_STATUS_NOT_ENOUGH_DATA) fail(name, "truncated WebP header");
  if (status != VP8_STATUS_OK) fail(name, "bad WebP header (libwebp status " + std::to_string(status) + ")");
  if (features.has_animation) fail(name, "animated WebP is not supported");
  check_pixel_limit(static_cast<uint64_t>(features.width), static_cast<uint64_t>(features.height), "WebP", name,
                    limits);
  Image out(features.width, features.height, 3);
  // Alpha is dropped, as for PNG.
  if (!WebPDecodeRGBInto(data, bytes.size(), out.pixels.data(), out.pixels.size(), static_cast<int>(out.row_bytes()))) {
    fail(name, "corrupt or truncated WebP data");
  }
  return out;
}

#else

Image decode_webp(std::string_view, const std::string& name, const DecodeLimits&) {
  fail(name, "this is a WebP image, and WebP support was not built in (libwebp was not found when arcforge was "
             "configured; install libwebp-dev and reconfigure)");
}

#endif

}  // namespace detail
}  // namespace arcforge::image
