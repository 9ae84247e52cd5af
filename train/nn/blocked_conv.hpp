#pragma once
// Dense 2-D convolutions in training through oneDNN's blocked layouts, for CPUs without AVX-512.
//
// The models keep activations channels-last (NHWC), and libtorch 1.13 hands such convolutions to
// oneDNN in NHWC. On AVX2, oneDNN's NHWC kernels are much slower than its blocked (nChw8c) ones: on
// a 2-core AVX2 EPYC at batch 64, r50's 3x3 convolutions (forward, input and weight gradients) take
// 1.1-2x as long in NHWC as blocked, shape by shape, 64->64 at 112x112 2135 ms against 1172, while
// the reorders between the layouts cost 1-8% of the blocked time. Here the convolution, its input
// gradient and its weight gradient each reorder their operands into the layouts oneDNN prefers and
// the results back into the tensors' own layouts; the tensors the model sees stay what they were.
//
// The library needs oneDNN at build time (the deployment-capable build, which has it as the runtime's
// backend; libtorch uses the same libdnnl there). Without it (the GPU machine's build),
// blocked_conv_available() is false and nothing routes here.
#include <torch/torch.h>

#include "train/nn/grouped_conv.hpp"

namespace arcforge::nn {

// Whether this build carries the oneDNN path.
bool blocked_conv_available();

// Whether conv2d_forward takes blocked_conv2d for x and weight: the path is built, the CPU kernels'
// instruction-set level is AVX2 (cpu_kernel_active_isa(), so that tests can force it; with AVX-512
// oneDNN's NHWC kernels are as good), x a float [N,C,H,W] channels-last CPU tensor, weight float
// [O, C, kh, kw] with kh or kw above 1 (1x1 kernels run as fast in NHWC, so the reorders would be
// a loss), groups 1, and C and O multiples of 8 (whole blocks; not the RGB stem).
bool dense_conv_runs_blocked(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec);

// at::conv2d(x, weight, {}, stride, padding) for a float CPU x and weight (any strides, groups 1),
// forward and backward on oneDNN with blocked layouts. The output has x's memory format.
// std::invalid_argument where blocked_conv_available() is false or the arguments do not fit.
torch::Tensor blocked_conv2d(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec);

}  // namespace arcforge::nn
