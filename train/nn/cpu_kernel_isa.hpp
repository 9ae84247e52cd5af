#pragma once
// The training kernels' instruction-set levels: the core library's (arcforge/cpu/isa.hpp, which
// the runtime's kernels share), under the names the training code and its tests use.
#include "arcforge/cpu/isa.hpp"

namespace arcforge::nn {

using cpu::clear_forced_cpu_kernel_isa;
using cpu::cpu_kernel_active_isa;
using cpu::cpu_kernel_best_isa;
using cpu::CpuKernelIsa;
using cpu::force_cpu_kernel_isa;

}  // namespace arcforge::nn
