#pragma once
// Where the runtime's own loops (the depthwise loop, the stem convolution) find a channel of a
// pixel in the activation layouts they read and write: channels-last, or oneDNN's nChw8c/nChw16c.
#include <cstdint>

namespace arcforge::runtime::detail {

// Where channel c of pixel (y, x) of image n lies, in elements: n * image + (c / block) * block_step
// + c % block + y * row + x * pixel. Channels-last: block = channels, pixel = channels. nChwXc:
// block = X, pixel = X, block_step = H * W * X.
struct ActivationLayout {
  int64_t block = 1, block_step = 0, image = 0, row = 0, pixel = 0;
};

inline int64_t channel_offset(const ActivationLayout& l, int64_t c) {
  return c / l.block * l.block_step + c % l.block;
}

}  // namespace arcforge::runtime::detail
