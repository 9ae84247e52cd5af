#include "arcforge/cpu/isa.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace arcforge::cpu {
namespace {

CpuKernelIsa cpuid_isa() {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) return CpuKernelIsa::avx512_bf16;
  if (__builtin_cpu_supports("avx512f")) return CpuKernelIsa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuKernelIsa::avx2;
#endif
  return CpuKernelIsa::baseline;
}

// The CPU's level, capped by oneDNN's own variable where it is set (read once, as oneDNN does).
CpuKernelIsa detected_isa() {
  static const CpuKernelIsa isa = [] {
    const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
    if (!cap) cap = std::getenv("DNNL_MAX_CPU_ISA");
    const CpuKernelIsa found = cpuid_isa();
    const std::optional<CpuKernelIsa> limit = cap ? isa_cap_of_onednn_name(cap) : std::nullopt;
    return limit ? std::min(found, *limit) : found;
  }();
  return isa;
}

std::atomic<int> forced_isa{-1};

}  // namespace

std::optional<CpuKernelIsa> isa_cap_of_onednn_name(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper == "SSE41" || upper == "AVX") return CpuKernelIsa::baseline;  // AVX without AVX2 and FMA
  if (upper == "AVX2" || upper == "AVX2_VNNI") return CpuKernelIsa::avx2;
  if (upper == "AVX512_CORE" || upper == "AVX512_CORE_VNNI" || upper.rfind("AVX512_MIC", 0) == 0) {
    return CpuKernelIsa::avx512;
  }
  return std::nullopt;  // ALL, AVX512_CORE_BF16 and above, or a name oneDNN would ignore too
}

const char* cpu_kernel_isa_name(CpuKernelIsa isa) {
  switch (isa) {
    case CpuKernelIsa::baseline: return "baseline";
    case CpuKernelIsa::avx2: return "avx2";
    case CpuKernelIsa::avx512: return "avx512";
    case CpuKernelIsa::avx512_bf16: return "avx512_bf16";
  }
  return "?";
}

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
