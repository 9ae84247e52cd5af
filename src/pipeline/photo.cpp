// Photo: pixels decoded at M/8 of a file's size, and the map to the file's coordinates.
#include "arcforge/pipeline/photo.hpp"

#include <algorithm>
#include <cmath>

#include "arcforge/image/codec.hpp"

namespace arcforge::pipeline {

Photo Photo::from_image(image::Image rgb, std::string name) {
  Photo photo;
  photo.full_width = rgb.width;
  photo.full_height = rgb.height;
  photo.pixels = std::move(rgb);
  photo.name = std::move(name);
  return photo;
}

Point2 reduced_point(Point2 full, int eighths) {
  const float s = static_cast<float>(eighths) / 8.0f;
  return {(full.x + 0.5f) * s - 0.5f, (full.y + 0.5f) * s - 0.5f};
}

Point2 full_point(Point2 reduced, int eighths) {
  const float s = static_cast<float>(eighths) / 8.0f;
  return {(reduced.x + 0.5f) / s - 0.5f, (reduced.y + 0.5f) / s - 0.5f};
}

Point2 Photo::to_pixels(Point2 full) const { return reduced_point(full, eighths); }

Point2 Photo::to_full(Point2 pixel) const { return full_point(pixel, eighths); }

image::Image as_rgb(image::Image decoded) {
  if (decoded.channels != 1) return decoded;
  image::Image rgb(decoded.width, decoded.height, 3);
  for (size_t i = 0; i < decoded.pixels.size(); ++i) {
    rgb.pixels[3 * i] = rgb.pixels[3 * i + 1] = rgb.pixels[3 * i + 2] = decoded.pixels[i];
  }
  return rgb;
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
