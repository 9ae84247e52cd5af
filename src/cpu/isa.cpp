#include "arcforge/cpu/isa.hpp"

#include <atomic>
#include <stdexcept>

namespace arcforge::cpu {
namespace {

CpuKernelIsa detected_isa() {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  static const CpuKernelIsa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) return CpuKernelIsa::avx512_bf16;
    if (__builtin_cpu_supports("avx512f")) return CpuKernelIsa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuKernelIsa::avx2;
    return CpuKernelIsa::baseline;
  }();
  return isa;
#else
  return CpuKernelIsa::baseline;
#endif
}

std::atomic<int> forced_isa{-1};

}  // namespace

CpuKernelIsa cpu_kernel_best_isa() { return detected_isa(); }

CpuKernelIsa cpu_kernel_active_isa() {
  const int forced = forced_isa.load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<CpuKernelIsa>(forced) : detected_isa();
}

void force_cpu_kernel_isa(CpuKernelIsa isa) {
  if (static_cast<int>(isa) > static_cast<int>(detected_isa()))
    throw std::invalid_argument("force_cpu_kernel_isa: this CPU cannot run the requested instruction set");
  forced_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

void clear_forced_cpu_kernel_isa() { forced_isa.store(-1, std::memory_order_relaxed); }

}  // namespace arcforge::cpu
