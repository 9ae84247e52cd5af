#pragma once
// Dynamic loss scaling for fp16 (PyTorch's GradScaler semantics): multiply the loss by `scale`
// before backward, divide the gradients by it before the step (the trainer, with scale_grads), skip the step and halve the scale
// when a gradient is not finite, double the scale after `growth_interval` finite steps.
#include <torch/torch.h>

#include <vector>

namespace arcforge::train {

class GradScaler {
 public:
  GradScaler(bool enabled, double init_scale = 65536.0, double growth_factor = 2.0,
             double backoff_factor = 0.5, int64_t growth_interval = 2000);

  torch::Tensor scale(const torch::Tensor& loss) const;
  // Divides the gradients of `params` by the scale (nothing when disabled).
  void unscale(const std::vector<torch::Tensor>& params) const;
  // From now on scale() and unscale() read the scale from a tensor on `device`, refreshed by
  // update() and restore(), instead of baking the host value into the kernels: a captured CUDA
  // graph (train.cuda_graph) then sees every later scale. Same values either way (powers of two).
  void keep_on_device(torch::Device device);
  // update() decided on the device from `finite` (a bool scalar there), after keep_on_device():
  // nothing is read back. sync_from_device() brings current_scale() and growth_tracker() up to date.
  void update_on_device(const torch::Tensor& finite);
  void sync_from_device();
  // Adjusts the scale after a step: found_nonfinite says whether the step was skipped.
  void update(bool found_nonfinite);

  bool enabled() const { return enabled_; }
  double current_scale() const { return scale_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  void restore(double scale, int64_t growth_tracker);

 private:
  bool enabled_;
  double scale_;
  double growth_factor_;
  double backoff_factor_;
  int64_t growth_interval_;
  int64_t growth_tracker_ = 0;
  torch::Tensor scale_tensor_;    // float scalars on the device, after keep_on_device()
  torch::Tensor inverse_tensor_;
  torch::Tensor tracker_tensor_;  // float, the growth tracker (exact below 2^24)

  void refresh_tensors();
};

}  // namespace arcforge::train
