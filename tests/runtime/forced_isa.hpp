#pragma once
// Runs arcforge's own CPU kernels (arcforge/cpu/isa.hpp) at each instruction-set level this CPU
// has, for tests that compare the levels' results.
#include <vector>

#include "arcforge/cpu/isa.hpp"

namespace arcforge::test {

// Forces a level for its lifetime; clears it even when an assertion fails.
class ForcedIsa {
 public:
  explicit ForcedIsa(cpu::CpuKernelIsa isa) { cpu::force_cpu_kernel_isa(isa); }
  ~ForcedIsa() { cpu::clear_forced_cpu_kernel_isa(); }
  ForcedIsa(const ForcedIsa&) = delete;
  ForcedIsa& operator=(const ForcedIsa&) = delete;
};

// The level's name, for traces.
inline constexpr auto isa_name = cpu::cpu_kernel_isa_name;

// Every level up to the best this CPU runs.
inline std::vector<cpu::CpuKernelIsa> runnable_isas() {
  std::vector<cpu::CpuKernelIsa> out;
  for (int k = 0; k <= static_cast<int>(cpu::cpu_kernel_best_isa()); ++k) {
    out.push_back(static_cast<cpu::CpuKernelIsa>(k));
  }
  return out;
}

}  // namespace arcforge::test
