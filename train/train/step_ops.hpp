#pragma once
// The per-step tensor work around the optimizer, written with multi-tensor (_foreach_) kernels and
// without host syncs, so that a CUDA step is not bound by hundreds of small launches:
// clipping, the finiteness check, and SGD with momentum (torch::optim::SGD's exact arithmetic).
#include <torch/torch.h>

#include <vector>

namespace arcforge::train {

// Gradients of `params` that are defined, in order.
std::vector<torch::Tensor> defined_grads(const std::vector<torch::Tensor>& params);

// Drops every gradient (PyTorch's zero_grad(set_to_none=True)): backward then writes fresh
// gradients instead of adding to zero-filled ones, one kernel per parameter fewer.
void clear_grads(const std::vector<torch::Tensor>& params);

// Multiplies every gradient by `factor` (fp16 loss-scale removal).
void scale_grads(const std::vector<torch::Tensor>& params, double factor);

struct GradientCheck {
  torch::Tensor all_finite;  // bool scalar on the device: every gradient of every group is finite
  torch::Tensor clip_norm;   // float scalar: total L2 norm of the clipped group before clipping
};

// Clips the gradients of `clipped` to total L2 norm `max_norm` (as torch.nn.utils.clip_grad_norm_:
// coefficient max_norm / (norm + 1e-6), applied when below 1; max_norm <= 0 disables clipping) and
// checks that the gradients of `clipped` and `others` are finite. Nothing is read back to the host:
// a non-finite norm gives a non-finite coefficient, and the caller skips the step on all_finite.
GradientCheck clip_and_check(const std::vector<torch::Tensor>& clipped,
                             const std::vector<torch::Tensor>& others, double max_norm);

// One step of torch::optim::SGD (weight decay, momentum, dampening, Nesterov) over every group,
// with the momentum buffers kept in the optimizer's own state (so checkpoints are unchanged), but
// with one multi-tensor kernel per operation instead of one per parameter.
void foreach_sgd_step(torch::optim::SGD& optimizer);

// Whether every parameter with a gradient has its momentum buffer (true without momentum): what
// masked_sgd_step needs. False before the first step that was applied.
bool sgd_state_ready(torch::optim::SGD& optimizer);

// foreach_sgd_step where `apply` (a bool scalar on the parameters' device) is true, bit for bit,
// and an exact no-op where it is false (parameters and buffers keep their values even when the
// gradients hold NaN), decided on the device: nothing is read back. Needs sgd_state_ready.
void masked_sgd_step(torch::optim::SGD& optimizer, const torch::Tensor& apply);

}  // namespace arcforge::train

namespace arcforge::train {

// A copy of some tensors (BatchNorm running statistics) taken with one concatenation per dtype,
// restored only when a step is skipped.
class TensorSnapshot {
 public:
  explicit TensorSnapshot(std::vector<torch::Tensor> tensors);
  void take();
  void restore();
  // Restores where `keep` (a bool scalar on the device) is false, decided on the device.
  void restore_unless(const torch::Tensor& keep);

 private:
  struct Group {
    std::vector<torch::Tensor> tensors;
    torch::Tensor copy;
  };
  std::vector<Group> groups_;
};

}  // namespace arcforge::train
