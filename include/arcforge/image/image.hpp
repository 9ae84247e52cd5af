#pragma once
// An 8-bit image in memory: rows top to bottom, pixels left to right, channels interleaved (HWC).
// Three channels are RGB (never BGR); one channel is gray.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace arcforge::image {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // height * width * channels bytes

  Image() = default;
  // Zero-filled; throws std::invalid_argument on a negative size or a channel count other than 1/3.
  Image(int width_, int height_, int channels_) : width(width_), height(height_), channels(channels_) {
    if (width_ < 0 || height_ < 0 || (channels_ != 1 && channels_ != 3)) {
      throw std::invalid_argument("arcforge::image::Image: bad size or channel count");
    }
    pixels.assign(static_cast<size_t>(width_) * static_cast<size_t>(height_) * static_cast<size_t>(channels_), 0);
  }

  bool empty() const { return width == 0 || height == 0; }
  size_t row_bytes() const { return static_cast<size_t>(width) * static_cast<size_t>(channels); }
  size_t index(int x, int y, int c) const {
    return static_cast<size_t>(y) * row_bytes() + static_cast<size_t>(x) * static_cast<size_t>(channels) +
           static_cast<size_t>(c);
  }
  uint8_t& at(int x, int y, int c) { return pixels[index(x, y, c)]; }
  uint8_t at(int x, int y, int c) const { return pixels[index(x, y, c)]; }
};

}  // namespace arcforge::image
