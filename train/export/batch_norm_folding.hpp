#pragma once
// Eval-mode batch norm is a per-channel affine map y = scale * x + shift, so it can be folded into
// the convolution or linear layer next to it. All arithmetic is in double; callers cast the result
// to float32 once, so folding adds a single rounding per weight.
#include <torch/torch.h>

#include "train/export/backbone_layers.hpp"

namespace arcforge::onnx_io {

struct ChannelAffine {
  torch::Tensor scale;  // [C] double: weight / sqrt(running_var + eps)
  torch::Tensor shift;  // [C] double: bias - running_mean * scale
};

ChannelAffine batch_norm_affine(const BatchNormTensors& bn);

// W [out, ...] and b [out] (b may be undefined: zeros) of a conv or linear layer whose output goes
// through `after`: W' = W * scale (per output channel), b' = b * scale + shift. Returns double.
void fold_into_producer(torch::Tensor& weight, torch::Tensor& bias, const ChannelAffine& after);

// W [out, C*H*W] and b [out] of a linear layer reading flatten(before(x)) with x [N,C,H,W]:
// W'[:, c*HW + p] = W[:, c*HW + p] * scale[c], b' = b + W . shift (expanded over the H*W
// positions of each channel). Returns double. Throws Error when the widths do not fit.
void fold_into_following_linear(torch::Tensor& weight, torch::Tensor& bias, const ChannelAffine& before);

}  // namespace arcforge::onnx_io
