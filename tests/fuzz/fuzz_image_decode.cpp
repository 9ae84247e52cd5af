// libFuzzer target for arcforge::image::decode (JPEG, PNG, WebP sniffed from the bytes), and for a
// JPEG also jpeg_size, decode_reduced at M/8 (M from the last byte), and the EXIF orientation
// readers of JPEG, PNG and WebP (1..8 whatever the bytes) with the turn they ask for. Small limits keep each run
// fast; every rejection must be an arcforge::Error, anything else (a crash, a sanitizer report,
// another exception, a reduced size other than ceil(full * M / 8)) is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/image/orientation.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  arcforge::image::DecodeLimits limits;
  limits.max_pixels = 1 << 20;
  limits.max_bytes = 1 << 20;
  try {
    const auto image =
        arcforge::image::decode(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-input", limits);
    // A decoded image is always RGB with exactly width * height * 3 bytes; touch the last byte so
    // that a short buffer shows up under ASan too.
    const size_t expected = static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3;
    if (image.channels != 3 || image.width <= 0 || image.height <= 0 || image.pixels.size() != expected) {
      __builtin_trap();
    }
    volatile uint8_t sink = image.pixels.back();
    (void)sink;
    // A PNG's eXIf or a WebP's EXIF chunk (JPEGs below): the turn keeps every pixel.
    const int orientation = arcforge::image::exif_orientation(std::string_view(reinterpret_cast<const char*>(data), size));
    if (orientation < 1 || orientation > 8) __builtin_trap();
    if (arcforge::image::apply_orientation(image, orientation).pixels.size() != expected) __builtin_trap();
  } catch (const arcforge::Error&) {
  }
  try {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    const int orientation = arcforge::image::exif_orientation(bytes);  // never throws
    if (orientation < 1 || orientation > 8) __builtin_trap();
    const auto full = arcforge::image::jpeg_size(bytes, "fuzz-input");
    if (!full) return 0;
    const int eighths = 1 + data[size - 1] % 8;
    auto image = arcforge::image::decode_reduced(bytes, "fuzz-input", eighths, limits);
    if (image.channels != 3 || image.width != arcforge::image::reduced_size(full->width, eighths) ||
        image.height != arcforge::image::reduced_size(full->height, eighths) ||
        image.pixels.size() != static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3) {
      __builtin_trap();
    }
    image = arcforge::image::apply_orientation(std::move(image), orientation);
    volatile uint8_t sink = image.pixels.back();
    (void)sink;
  } catch (const arcforge::Error&) {
  }
  return 0;
}
