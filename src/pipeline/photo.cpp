// Photo: pixels decoded at M/8 of a file's size, and the map to the file's coordinates.
#include "arcforge/pipeline/photo.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "arcforge/image/codec.hpp"
#include "arcforge/image/orientation.hpp"

namespace arcforge::pipeline {

Photo Photo::from_image(image::Image rgb, std::string name) {
  Photo photo;
  photo.full_width = rgb.width;
  photo.full_height = rgb.height;
  photo.pixels = std::move(rgb);
  photo.name = std::move(name);
  return photo;
}

Photo Photo::decode(std::shared_ptr<const std::string> encoded, std::string name, int eighths, int orientation,
                    const image::DecodeLimits& limits) {
  Photo photo;
  photo.pixels = image::apply_orientation(image::decode_reduced(*encoded, name, eighths, limits), orientation);
  photo.eighths = eighths;
  photo.orientation = orientation;
  photo.full_width = photo.pixels.width;  // the full size when not reduced
  photo.full_height = photo.pixels.height;
  if (eighths < 8) {
    const std::optional<image::ImageSize> full = image::jpeg_size(*encoded, name);  // decode_reduced took a JPEG
    const bool swap = image::orientation_swaps_axes(orientation);
    photo.full_width = swap ? full->height : full->width;
    photo.full_height = swap ? full->width : full->height;
  }
  const float s = static_cast<float>(eighths) / 8.0f;
  if (image::orientation_reverses_x(orientation)) {
    photo.offset_x = static_cast<float>(photo.pixels.width) - static_cast<float>(photo.full_width) * s;
  }
  if (image::orientation_reverses_y(orientation)) {
    photo.offset_y = static_cast<float>(photo.pixels.height) - static_cast<float>(photo.full_height) * s;
  }
  photo.encoded = std::move(encoded);
  photo.name = std::move(name);
  return photo;
}

Point2 PhotoGeometry::to_pixels(Point2 full) const {
  const float s = static_cast<float>(eighths) / 8.0f;
  return {(full.x + 0.5f) * s - 0.5f + offset_x, (full.y + 0.5f) * s - 0.5f + offset_y};
}

Point2 PhotoGeometry::to_full(Point2 pixel) const {
  const float s = static_cast<float>(eighths) / 8.0f;
  return {(pixel.x - offset_x + 0.5f) / s - 0.5f, (pixel.y - offset_y + 0.5f) / s - 0.5f};
}

int detection_eighths(int width, int height, int input_width, int input_height) {
  for (int eighths = 1; eighths < 8; ++eighths) {
    if (image::reduced_size(width, eighths) >= input_width || image::reduced_size(height, eighths) >= input_height) {
      return eighths;
    }
  }
  return 8;
}

int alignment_eighths(const Affine2x3& full_to_crop) {
  // A similarity's linear part is scale x rotation: crop pixels per full-size pixel = sqrt(|det|).
  const double crop_per_full = std::sqrt(std::abs(full_to_crop.determinant()));
  // Crop pixels per reduced pixel = crop_per_full * 8 / eighths <= 1. The small slack keeps an
  // exact fit (e.g. 0.25 at 2/8) from tipping over on rounding.
  const double needed = std::ceil(8.0 * crop_per_full - 1e-9);
  return static_cast<int>(std::clamp(needed, 1.0, 8.0));
}

}  // namespace arcforge::pipeline
