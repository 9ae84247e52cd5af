#pragma once
// arcforge's own convolution for a network's first layer (the stem): 3x3 over a planar (NCHW) fp32
// image of 1 or 3 channels, into many channels, with its activation (ReLU, leaky ReLU, PReLU, Clip).
// oneDNN first reorders such an input to channels-last and then runs a kernel built for many input
// channels: on SCRFD-500m at 640x640 the reorder and the convolution took 1.2 ms of a 9.2 ms run.
// This loop reads the planes as they are and broadcasts each input value against W output channels.
// Writes fp32 or bf16, channels-last or nChw8c/nChw16c.
#include <cmath>
#include <cstdint>
#include <vector>

#include "activation_layout.hpp"

namespace arcforge::runtime::detail {

struct StemConv {
  enum class Type { f32, bf16 };
  int64_t in_channels = 0, out_channels = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t stride_h = 1, stride_w = 1, pad_t = 0, pad_l = 0;
  // 9 * in_channels per output channel, tap-major: weights[((ic * 3 + kh) * 3 + kw) * out_channels + oc].
  std::vector<float> weights;
  std::vector<float> bias;            // one per output channel
  std::vector<float> negative_slope;  // one per output channel: 1 none, 0 ReLU, else leaky/PReLU
  float lower = -INFINITY, upper = INFINITY;  // Clip, after the slope
  Type destination = Type::f32;
  ActivationLayout dst_layout;
};

// The input channel counts the loop is compiled for.
bool stem_conv_takes_input_channels(int64_t channels);

// Output rows [begin, end) of the batch, row r being row r % out_h of image r / out_h; `src` is the
// batch in NCHW.
void stem_conv_rows(const StemConv& s, const float* src, void* dst, int64_t begin, int64_t end);

}  // namespace arcforge::runtime::detail
