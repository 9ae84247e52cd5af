#pragma once
// Convolutions in training: arcforge's CPU kernel where it applies (grouped_conv.hpp, one or two
// channels per group), libtorch's convolution everywhere else. (A kernel for the RGB stem was tried:
// libtorch's is faster, 18 ms against 24 for mbf's stem forward and weight gradient in fp32.)
#include <torch/torch.h>

namespace arcforge::nn {

// A Conv2d module's forward: through grouped_conv2d() when the module is grouped, with zero padding
// mode, no dilation and no bias, else the module's own forward.
torch::Tensor conv2d_forward(torch::nn::Conv2d& conv, const torch::Tensor& x);

}  // namespace arcforge::nn
