#pragma once
// The instruction sets arcforge's own CPU kernels are compiled for: the training kernels (PReLU,
// BatchNorm + PReLU, grouped convolution, ViT attention, ReLU6) and the runtime's fused attention.
// Loops of 16 float lanes (AVX-512), 8 (AVX2 with FMA), or the compiler's own code; avx512_bf16 is
// the AVX-512 code storing bf16 results with AVX512-BF16's conversion instruction instead of
// integer rounding (see lanes.hpp). Each kernel runs the best level this CPU has, detected once;
// tests force each level the CPU can run. oneDNN's ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) caps
// these kernels too, so that one variable makes the whole process run as on an older CPU.
#include <optional>
#include <string_view>

namespace arcforge::cpu {

enum class CpuKernelIsa { baseline, avx2, avx512, avx512_bf16 };

// The level a ONEDNN_MAX_CPU_ISA value allows these kernels (case-insensitive): SSE41 and AVX the
// compiler's code, AVX2 and AVX2_VNNI avx2, AVX512_CORE and AVX512_CORE_VNNI avx512; nullopt (no
// cap) for ALL, AVX512_CORE_BF16 and above, and names oneDNN does not know.
std::optional<CpuKernelIsa> isa_cap_of_onednn_name(std::string_view name);
const char* cpu_kernel_isa_name(CpuKernelIsa isa);

// The CPU's best level, under the ONEDNN_MAX_CPU_ISA cap where it is set.
CpuKernelIsa cpu_kernel_best_isa();
// The level kernels use now: the forced one if a test set it, else the best.
CpuKernelIsa cpu_kernel_active_isa();
// Forces `isa` for every later call (std::invalid_argument if the CPU lacks it); not while a
// kernel runs.
void force_cpu_kernel_isa(CpuKernelIsa isa);
void clear_forced_cpu_kernel_isa();

}  // namespace arcforge::cpu
