#pragma once
// A ViT block's multi-head attention on the CPU, from the qkv projection to the heads' outputs:
// softmax(q k^T * head_dim^-1/2) v per image and head, in float whatever the input's dtype (as
// arcface_torch computes it under autocast). libtorch 1.13 runs the products as one small BLAS call
// per image and head (512 per product for vit_t at batch 64, through select()), and stores every
// head's [T, T] probabilities for backward: the products, the softmax and their backward took a
// third of a vit_t training step on the 2-core EPYC. Here each (image, head) pair is one task: its
// q, k and v are packed into float tiles that stay in cache, the products run in register tiles of
// 16 or 8 lanes (cpu_kernel_isa.hpp picks), and only the output and each row's log-sum-exp are kept;
// backward recomputes the probabilities from them, as FlashAttention does.
#include <torch/torch.h>

#include <cstdint>

namespace arcforge::nn {

// Whether attention_from_qkv() takes the CPU kernel: qkv a contiguous, non-empty [N, T, 3 * D] CPU
// tensor, float or bf16, D a multiple of heads.
bool attention_uses_cpu_kernel(const torch::Tensor& qkv, int64_t heads);

// qkv [N, T, 3 * D], laid out [N, T, 3, heads, D / heads] (a ViT's qkv Linear) -> [N, T, D]: the
// heads' outputs side by side. The result is float for float or bf16 input (double stays double);
// differentiable with respect to qkv, whose gradient has qkv's dtype. Other inputs go through
// libtorch's matmul and softmax, the same mathematics.
torch::Tensor attention_from_qkv(const torch::Tensor& qkv, int64_t heads);

}  // namespace arcforge::nn
