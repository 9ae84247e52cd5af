#pragma once
// PReLU, y = x > 0 ? x : w[c] * x, with a CPU kernel for training. libtorch 1.13's CPU
// prelu_backward is a slow generic loop: on MobileFaceNet it took a third of an fp32 training step
// and half of a bf16 one (PyTorch's profiler, 2-core EPYC). Here forward and backward are one pass
// each over a channels-last or NCHW tensor, float or bf16, with the weight's gradient summed from
// exact products in per-thread double partial sums. Other devices and dtypes go to at::prelu.
// The loops are written in 16 (AVX-512) or 8 (AVX2) lanes, picked at run time: GCC left the bf16
// loops scalar, which made bf16 slower than fp32 (mbf bf16 training 98 -> 114 img/s with them).
//
// Same semantics as torch::nn::PReLU: the output has x's dtype (under bf16 autocast, x is bf16 and
// the weight stays fp32), the weight's gradient has the weight's dtype, and the weight is either one
// slope per channel (dim 1) or a single shared one.
#include <torch/torch.h>

namespace arcforge::nn {

torch::Tensor prelu(const torch::Tensor& x, const torch::Tensor& weight);

// Whether prelu() takes the CPU kernel for this input (else it calls at::prelu).
bool prelu_uses_cpu_kernel(const torch::Tensor& x, const torch::Tensor& weight);

// Its loops run in the instruction set cpu_kernel_isa.hpp picks.

}  // namespace arcforge::nn
