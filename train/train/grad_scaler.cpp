#include "train/train/grad_scaler.hpp"

#include "train/train/step_ops.hpp"

#include <stdexcept>

namespace arcforge::train {

GradScaler::GradScaler(bool enabled, double init_scale, double growth_factor,
                       double backoff_factor, int64_t growth_interval)
    : enabled_(enabled),
      scale_(enabled ? init_scale : 1.0),
      growth_factor_(growth_factor),
      backoff_factor_(backoff_factor),
      growth_interval_(growth_interval) {}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const {
  if (!enabled_) return loss;
  return scale_tensor_.defined() ? loss * scale_tensor_ : loss * scale_;
}

void GradScaler::unscale(const std::vector<torch::Tensor>& params) const {
  if (!enabled_) return;
  if (!scale_tensor_.defined()) {
    scale_grads(params, 1.0 / scale_);
    return;
  }
  // One kernel per gradient (libtorch 1.13 has no multi-tensor multiply by a tensor); under a
  // CUDA graph they cost nothing at replay.
  torch::NoGradGuard no_grad;
  for (auto& g : defined_grads(params)) g.mul_(inverse_tensor_);
}

void GradScaler::keep_on_device(torch::Device device) {
  if (!enabled_) return;
  scale_tensor_ = torch::empty({}, torch::TensorOptions().dtype(torch::kFloat).device(device));
  inverse_tensor_ = torch::empty_like(scale_tensor_);
  tracker_tensor_ = torch::empty_like(scale_tensor_);
  refresh_tensors();
}

void GradScaler::update_on_device(const torch::Tensor& finite) {
  if (!enabled_) return;
  if (!scale_tensor_.defined()) throw std::logic_error("GradScaler::update_on_device before keep_on_device");
  torch::NoGradGuard no_grad;
  // update()'s rule: a non-finite step backs off and restarts the count; growth_interval finite
  // steps in a row grow the scale and restart it.
  const torch::Tensor counted = torch::where(finite, tracker_tensor_ + 1, torch::zeros_like(tracker_tensor_));
  const torch::Tensor grows = counted >= static_cast<double>(growth_interval_);
  const torch::Tensor scale =
      torch::where(finite, torch::where(grows, scale_tensor_ * growth_factor_, scale_tensor_), scale_tensor_ * backoff_factor_);
  tracker_tensor_.copy_(torch::where(grows, torch::zeros_like(counted), counted));
  scale_tensor_.copy_(scale);
  inverse_tensor_.copy_(scale.reciprocal());
}

void GradScaler::sync_from_device() {
  if (!enabled_ || !scale_tensor_.defined()) return;
  scale_ = scale_tensor_.item<double>();
  growth_tracker_ = static_cast<int64_t>(tracker_tensor_.item<double>());
}

void GradScaler::refresh_tensors() {
  if (!scale_tensor_.defined()) return;
  // fill_ passes the value as a kernel argument: no copy from host memory, no sync.
  scale_tensor_.fill_(scale_);
  inverse_tensor_.fill_(1.0 / scale_);
  tracker_tensor_.fill_(static_cast<double>(growth_tracker_));
}

void GradScaler::update(bool found_nonfinite) {
  if (!enabled_) return;
  if (found_nonfinite) {
    scale_ *= backoff_factor_;
    growth_tracker_ = 0;
    refresh_tensors();
    return;
  }
  if (++growth_tracker_ >= growth_interval_) {
    scale_ *= growth_factor_;
    growth_tracker_ = 0;
    refresh_tensors();
  }
}

void GradScaler::restore(double scale, int64_t growth_tracker) {
  if (!enabled_) return;
  scale_ = scale;
  growth_tracker_ = growth_tracker;
  refresh_tensors();
}

}  // namespace arcforge::train
