#pragma once
// Convolutions in training: arcforge's CPU kernel where it applies (grouped_conv.hpp, one or two
// channels per group), oneDNN in blocked layouts for dense ones on AVX2 (blocked_conv.hpp), libtorch's
// convolution everywhere else. And Linear layers over tokens as 1x1
// convolutions on the CPU (see linear_forward). (A kernel for the RGB stem was tried:
// libtorch's is faster, 18 ms against 24 for mbf's stem forward and weight gradient in fp32.)
#include <torch/torch.h>

namespace arcforge::nn {

// A Conv2d module's forward, with zero padding mode, no dilation and no bias: through grouped_conv2d()
// when the module is grouped, through blocked_conv2d() where dense_conv_runs_blocked (AVX2), else
// the module's own forward. A dense one computes in fp32 where bf16_layer_computes_in_fp32.
torch::Tensor conv2d_forward(torch::nn::Conv2d& conv, const torch::Tensor& x);

// Under bf16 autocast on a CPU without AVX-512, dense convolutions and Linear layers compute in fp32
// and round their output to bf16: oneDNN 2.x has no bf16 kernels below AVX-512, and libtorch's
// fallback loops made mbf train 18x slower in bf16 than in fp32 on an AVX2 EPYC. arcforge's own
// kernels (grouped convolutions, BatchNorm, PReLU, attention) still run in bf16 there. The
// instruction-set level is cpu_kernel_active_isa()'s, so that tests can force it.
bool bf16_layer_computes_in_fp32(const torch::Tensor& x);

// A Linear module's forward. On a CPU with AVX-512, a float or bf16 [N, T, in] input (a ViT's
// tokens, T >= 8) is the channels-last image [N, in, T, 1] without a copy, and the layer a 1x1
// convolution of it: libtorch 1.13 runs its CPU linear on the system BLAS (OpenBLAS, ~110 GMAC/s in
// fp32 on the 2-core AVX-512 EPYC), and the convolution on oneDNN, 1.8x faster in fp32 and
// 1.1-1.25x in bf16 forward and backward on vit_t's layers. Below AVX-512 it is the other way round
// (AVX2 EPYC, fp32: oneDNN's 1x1 convolution 1.03-1.58x slower than OpenBLAS on vit_t's layers), so
// there, and for everything else, the module's own forward (in fp32 where
// bf16_layer_computes_in_fp32). Same result up to rounding, same autocast policy.
torch::Tensor linear_forward(torch::nn::Linear& linear, const torch::Tensor& x);
// Whether linear_forward takes the convolution for `x` (the instruction-set level as
// cpu_kernel_active_isa() says, so that tests can force the other path).
bool linear_runs_as_conv(const torch::Tensor& x);

}  // namespace arcforge::nn
