#pragma once
// Shared between the per-format files of src/image; not part of the public API.
#include <cstdint>
#include <string>
#include <string_view>

#include "arcforge/image/codec.hpp"

namespace arcforge::image::detail {

[[noreturn]] void fail(const std::string& name, const std::string& what);

// Rejects a header whose width * height is over limits.max_pixels, before anything is allocated.
void check_pixel_limit(uint64_t width, uint64_t height, const char* format, const std::string& name,
                       const DecodeLimits& limits);

// Throws when the image cannot be encoded (empty, wrong channel count, pixel buffer size).
void check_encodable(const Image& image, const char* format);

// eighths / 8 of the full size (1..8; 8 = full), through libjpeg-turbo's scaled inverse DCT.
Image decode_jpeg(std::string_view bytes, const std::string& name, const DecodeLimits& limits, int eighths = 8);
Image decode_png(std::string_view bytes, const std::string& name, const DecodeLimits& limits);
Image decode_webp(std::string_view bytes, const std::string& name, const DecodeLimits& limits);

}  // namespace arcforge::image::detail
