#pragma once
// The training kernels' building blocks: the core library's lanes (arcforge/cpu/lanes.hpp, shared
// with the runtime's kernels) plus the two helpers that take libtorch tensors. Include only from a
// kernel's .cpp (see lanes.hpp).
#include <ATen/core/Tensor.h>

#include "arcforge/cpu/lanes.hpp"
#include "train/nn/cpu_kernel_isa.hpp"

namespace arcforge::nn::lanes {

using namespace ::arcforge::cpu::lanes;

// A float or bf16 tensor's elements as float or as bf16 bits.
template <typename S>
S* elements(const at::Tensor& t) {
  return reinterpret_cast<S*>(t.data_ptr());
}

// Calls fn(float{}) for a float tensor; for a bf16 one fn(Bf16Native{}) where the active level is
// avx512_bf16, else fn(uint16_t{}).
template <typename Fn>
void dispatch_float_or_bf16(const at::Tensor& x, Fn&& fn) {
  if (x.scalar_type() == at::kFloat) {
    fn(float{});
  } else if (cpu_kernel_active_isa() == CpuKernelIsa::avx512_bf16) {
    fn(Bf16Native{});
  } else {
    fn(uint16_t{});
  }
}

}  // namespace arcforge::nn::lanes
