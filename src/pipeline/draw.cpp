// Drawing boxes and landmarks into an RGB copy of a photo.
#include "arcforge/pipeline/draw.hpp"

#include <algorithm>
#include <array>
#include <cmath>

namespace arcforge::pipeline {
namespace {

using Colour = std::array<uint8_t, 3>;

void fill_rect(image::Image& img, int x1, int y1, int x2, int y2, const Colour& c) {
  x1 = std::max(x1, 0), y1 = std::max(y1, 0);
  x2 = std::min(x2, img.width - 1), y2 = std::min(y2, img.height - 1);
  for (int y = y1; y <= y2; ++y) {
    for (int x = x1; x <= x2; ++x) {
      for (int k = 0; k < 3; ++k) img.at(x, y, k) = c[k];
    }
  }
}

void fill_disc(image::Image& img, float cx, float cy, int radius, const Colour& c) {
  const int x0 = static_cast<int>(std::lround(cx)), y0 = static_cast<int>(std::lround(cy));
  for (int dy = -radius; dy <= radius; ++dy) {
    for (int dx = -radius; dx <= radius; ++dx) {
      const int x = x0 + dx, y = y0 + dy;
      if (dx * dx + dy * dy > radius * radius || x < 0 || y < 0 || x >= img.width || y >= img.height) continue;
      for (int k = 0; k < 3; ++k) img.at(x, y, k) = c[k];
    }
  }
}

}  // namespace

image::Image draw_detections(const image::Image& photo, const std::vector<Detection>& detections) {
  image::Image out = photo;
  if (out.channels == 1) {
    out = image::Image(photo.width, photo.height, 3);
    for (size_t i = 0; i < photo.pixels.size(); ++i) {
      out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = photo.pixels[i];
    }
  }
  const int t = std::max(1, std::min(out.width, out.height) / 300);
  const Colour green{0, 220, 0};
  const std::array<Colour, 5> point_colours{{{40, 80, 255}, {255, 40, 40}, {0, 255, 0}, {255, 0, 255}, {255, 220, 0}}};
  for (const auto& d : detections) {
    const int x1 = static_cast<int>(std::lround(d.box.x1)), y1 = static_cast<int>(std::lround(d.box.y1));
    const int x2 = static_cast<int>(std::lround(d.box.x2)), y2 = static_cast<int>(std::lround(d.box.y2));
    fill_rect(out, x1, y1, x2, y1 + t - 1, green);
    fill_rect(out, x1, y2 - t + 1, x2, y2, green);
    fill_rect(out, x1, y1, x1 + t - 1, y2, green);
    fill_rect(out, x2 - t + 1, y1, x2, y2, green);
    // The score as a bar above the box: full box width = 1.0.
    const int bar = static_cast<int>(std::lround((x2 - x1) * std::clamp(d.score, 0.0f, 1.0f)));
    fill_rect(out, x1, y1 - 3 * t, x1 + bar, y1 - 2 * t, green);
    if (!d.has_landmarks) continue;
    const int r = std::max(2, static_cast<int>(d.box.width() / 40));
    for (int i = 0; i < 5; ++i) fill_disc(out, d.landmarks[i].x, d.landmarks[i].y, r, point_colours[i]);
  }
  return out;
}

}  // namespace arcforge::pipeline
