#pragma once
// BatchNorm2d followed by PReLU, fused for training on the CPU: the ConvBlocks of MobileFaceNet
// (conv, BN, PReLU) and IResNet's stem and blocks. On an mbf bf16 step the two took 143 ms of 416
// (PyTorch's profiler, 2-core EPYC), and both are bound by memory: separately they read or write a
// full activation 13 times per step, fused 8. The normalised value z is never stored: forward
// makes one pass for the batch statistics and one for y = prelu(z), backward recomputes z from x in
// its two passes (the sums, then the input gradient). Sums are per channel, in float over blocks of
// pixels and then in per-thread doubles. Float or bf16 channels-last input; 16 or 8 lanes as
// cpu_kernel_isa.hpp picks.
//
// Same semantics as prelu(bn(x)) with torch::nn modules in training mode: the batch's biased
// variance normalises, the unbiased one enters the running variance with the module's momentum,
// num_batches_tracked counts the batch; y has x's dtype, gradients have the parameters' dtypes.
#include <torch/torch.h>

namespace arcforge::nn {

// Whether batch_norm_prelu() takes the fused kernel: a training-mode affine BatchNorm2d with running
// statistics and a momentum, float parameters, a PReLU slope per channel or shared (undefined: no
// PReLU), and x a non-empty channels-last [N,C,H,W] CPU tensor, float or bf16, with more than one
// value per channel.
bool batch_norm_prelu_uses_cpu_kernel(const torch::Tensor& x, torch::nn::BatchNorm2d& bn, const torch::Tensor& slope);

// prelu(bn(x)): fused where batch_norm_prelu_uses_cpu_kernel, else the modules one after the other.
torch::Tensor batch_norm_prelu(const torch::Tensor& x, torch::nn::BatchNorm2d& bn, const torch::Tensor& slope);

// bn(x) alone through the same kernel (its PReLU the identity): libtorch 1.13's channels-last bf16
// BatchNorm is slow, 2.9 ms forward + backward where this takes 1.8 (128 channels at 28x28, batch
// 64); in fp32 they are level.
torch::Tensor batch_norm2d(const torch::Tensor& x, torch::nn::BatchNorm2d& bn);

}  // namespace arcforge::nn
