#pragma once
// The instruction sets arcforge's own CPU training kernels (PReLU, grouped convolution) are compiled
// for: loops of 16 float lanes (AVX-512), 8 (AVX2), or the compiler's own code. Each kernel runs the
// best one this CPU has, detected once; tests force each level the CPU can run.

namespace arcforge::nn {

enum class CpuKernelIsa { baseline, avx2, avx512 };

CpuKernelIsa cpu_kernel_best_isa();
// The level kernels use now: the forced one if a test set it, else the best.
CpuKernelIsa cpu_kernel_active_isa();
// Forces `isa` for every later call (std::invalid_argument if the CPU lacks it); not while training.
void force_cpu_kernel_isa(CpuKernelIsa isa);
void clear_forced_cpu_kernel_isa();

}  // namespace arcforge::nn
