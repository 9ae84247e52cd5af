#pragma once
// Grouped 2-D convolution with one or two channels per group, for training on the CPU: the depthwise
// layers of MobileFaceNet and its conv2_dw (64 groups of 2 channels). libtorch 1.13's oneDNN path
// is slow on conv2_dw (128 channels at 56x56, batch 64): 117 ms forward and backward in fp32 and
// 98 ms in bf16 on the 2-core EPYC, against 33 and 28 here (test_cpu_conv's timing). Forward, the
// input's gradient and the weight's gradient are one pass each over a channels-last tensor, float
// or bf16, accumulated in float (the weight's gradient over up to 56 pixels, then in per-thread
// double sums), in 16 or 8 lanes as cpu_kernel_isa.hpp picks.
//
// Same semantics as at::conv2d without bias or dilation: the output has x's dtype and a
// channels-last layout; the weight's gradient has the weight's dtype. Under CPU autocast, x and the
// weight are first cast to the autocast dtype, as at::conv2d's autocast policy does.
#include <torch/torch.h>

#include <array>
#include <cstdint>

namespace arcforge::nn {

struct GroupedConvSpec {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};  // zeros on both sides of each spatial axis
  int64_t groups = 1;
};

// Whether grouped_conv2d() takes the CPU kernel: x a non-empty channels-last [N,C,H,W] CPU tensor,
// float or bf16, weight [C, C/groups, kh, kw] of the same dtype with C/groups 1 or 2 (after the
// autocast cast, if any).
bool grouped_conv_uses_cpu_kernel(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec);

// at::conv2d(x, weight, {}, stride, padding, 1, groups), through the CPU kernel where it applies.
torch::Tensor grouped_conv2d(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec);

}  // namespace arcforge::nn
