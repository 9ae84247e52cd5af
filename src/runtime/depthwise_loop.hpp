#pragma once
// arcforge's own depthwise 3x3 convolution (one filter per channel; MobileFaceNet's middle layer),
// with what oneDNN 2.6 cannot fuse into its depthwise kernel done in the same pass: a PReLU on the
// output and the quantization of the output for an int8 convolution after it. oneDNN runs the
// PReLU as a pass of its own over the tensor (docs/runtime.md, "The depthwise loop").
// Accumulates in fp32 from fp32 weights; reads fp32 or bf16 and writes fp32, bf16, u8 or s8, in a
// channels-last or channel-blocked (nChw8c/nChw16c) layout.
#include <cstdint>
#include <vector>

#include "activation_layout.hpp"

namespace arcforge::runtime::detail {

struct DepthwiseLoop {
  enum class Type { f32, bf16, u8, s8 };
  int64_t channels = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t stride_h = 1, stride_w = 1, pad_t = 0, pad_l = 0;
  std::vector<float> weights;       // 9 per channel, tap-major: weights[(kh * 3 + kw) * channels + c]
  // Groups of two channels (InsightFace's MobileFaceNet at scale 2: 128 channels in 64 groups):
  // channel c also sums its partner c ^ 1's input with these weights, laid out as `weights`.
  bool pairs = false;
  std::vector<float> partner_weights;
  std::vector<float> bias;          // one per channel
  std::vector<float> output_slope;  // empty, or one per channel: PReLU on the output
  Type source = Type::f32;          // f32 or bf16
  Type destination = Type::f32;
  float inv_scale = 1.0f;  // u8/s8 destination: y = saturate(round_half_even(x * inv_scale))
  ActivationLayout src_layout, dst_layout;
};

// False where ARCFORGE_RUNTIME_DEPTHWISE=0 keeps oneDNN's depthwise kernel (for comparisons).
bool depthwise_loop_enabled();

// Output rows [begin, end) of the batch, row r being row r % out_h of image r / out_h.
void depthwise_rows(const DepthwiseLoop& d, const void* src, void* dst, int64_t begin, int64_t end);

}  // namespace arcforge::runtime::detail
