#pragma once
// The instruction sets arcforge's own CPU kernels are compiled for: the training kernels (PReLU,
// BatchNorm + PReLU, grouped convolution, ViT attention, ReLU6) and the runtime's fused attention.
// Loops of 16 float lanes (AVX-512), 8 (AVX2 with FMA), or the compiler's own code; avx512_bf16 is
// the AVX-512 code storing bf16 results with AVX512-BF16's conversion instruction instead of
// integer rounding (see lanes.hpp). Each kernel runs the best level this CPU has, detected once;
// tests force each level the CPU can run.

namespace arcforge::cpu {

enum class CpuKernelIsa { baseline, avx2, avx512, avx512_bf16 };

CpuKernelIsa cpu_kernel_best_isa();
// The level kernels use now: the forced one if a test set it, else the best.
CpuKernelIsa cpu_kernel_active_isa();
// Forces `isa` for every later call (std::invalid_argument if the CPU lacks it); not while a
// kernel runs.
void force_cpu_kernel_isa(CpuKernelIsa isa);
void clear_forced_cpu_kernel_isa();

}  // namespace arcforge::cpu
