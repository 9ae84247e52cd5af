#pragma once
// ReLU6, y = min(max(x, 0), 6), as PyTorch's nn.ReLU6 (hardtanh: the gradient passes where
// 0 < x < 6), the activation of arcface_torch's ViT MLPs. On the CPU, libtorch 1.13 has no bf16
// hardtanh backward, and clamp's backward is four passes (two comparisons, an and, a where): 15 ms
// a layer of vit_t at batch 64, 0.2 s of a step. Here forward and backward are one pass each, float
// or bf16, in 16 or 8 lanes as cpu_kernel_isa.hpp picks, and backward reads the output (which the
// next Linear keeps anyway) instead of keeping the input alive. Other devices and dtypes go to
// torch::hardtanh.
#include <torch/torch.h>

namespace arcforge::nn {

torch::Tensor relu6(const torch::Tensor& x);

// Whether relu6() takes the CPU kernel: a non-empty float or bf16 CPU tensor.
bool relu6_uses_cpu_kernel(const torch::Tensor& x);

}  // namespace arcforge::nn
