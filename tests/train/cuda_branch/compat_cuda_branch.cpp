// Compiles the ARCFORGE_WITH_CUDA branch of train/compat/torch_compat.hpp (the one place with
// CUDA-only code) against this libtorch's c10/cuda headers and a stand-in CUDA runtime header, so
// a mistake there fails the build here, not minutes into a GPU session. Built, never linked.
#include "train/compat/torch_compat.hpp"

#ifndef ARCFORGE_WITH_CUDA
#error "this check is compiled with ARCFORGE_WITH_CUDA"
#endif

namespace arcforge::compat_check {

// Instantiates every CUDA branch.
int64_t every_cuda_branch() {
  compat::set_cuda_device(0);
  compat::set_cuda_sync_check(true);
  compat::set_cuda_sync_check(false);
  compat::cuda_reset_peak_memory(0);
  return compat::cuda_peak_allocated_bytes(0);
}

}  // namespace arcforge::compat_check
