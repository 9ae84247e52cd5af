#pragma once
// Host-to-device copies that leave the host free to run ahead of the device. In CUDA a copy from
// pageable memory first waits for every kernel already queued on the stream, so a few small index
// tensors per batch stall the training loop as surely as item() does. On CUDA the tensor is staged
// in pinned memory (PyTorch's caching host allocator keeps that block until the copy has run) and
// copied without blocking; elsewhere it is a plain .to().
#include <torch/torch.h>

namespace arcforge::data {

inline torch::Tensor upload(const torch::Tensor& host, torch::Device device) {
  if (!device.is_cuda() || !host.is_cpu()) return host.to(device);
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

}  // namespace arcforge::data
