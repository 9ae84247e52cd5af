#include "train/train/grad_scaler.hpp"

#include "train/train/step_ops.hpp"

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
  refresh_tensors();
}

void GradScaler::refresh_tensors() {
  if (!scale_tensor_.defined()) return;
  // fill_ passes the value as a kernel argument: no copy from host memory, no sync.
  scale_tensor_.fill_(scale_);
  inverse_tensor_.fill_(1.0 / scale_);
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
