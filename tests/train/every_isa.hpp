#pragma once
// Runs a kernel test once per instruction set this CPU runs (cpu_kernel_isa.hpp: the baseline, AVX2,
// AVX-512, AVX-512 with bf16 stores), each forced in turn and named in the failure's trace; leaves
// the choice to the CPU again afterwards.
#include <gtest/gtest.h>

#include <string>

#include "train/nn/cpu_kernel_isa.hpp"

template <typename Fn>
void on_every_instruction_set(Fn&& test) {
  namespace an = arcforge::nn;
  const an::CpuKernelIsa best = an::cpu_kernel_best_isa();
  for (int level = 0; level <= static_cast<int>(best); ++level) {
    SCOPED_TRACE("instruction set " + std::to_string(level));
    an::force_cpu_kernel_isa(static_cast<an::CpuKernelIsa>(level));
    test();
  }
  an::clear_forced_cpu_kernel_isa();
}
