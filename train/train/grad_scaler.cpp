#include "train/train/grad_scaler.hpp"

namespace arcforge::train {

GradScaler::GradScaler(bool enabled, double init_scale, double growth_factor,
                       double backoff_factor, int64_t growth_interval)
    : enabled_(enabled),
      scale_(enabled ? init_scale : 1.0),
      growth_factor_(growth_factor),
      backoff_factor_(backoff_factor),
      growth_interval_(growth_interval) {}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const {
  return enabled_ ? loss * scale_ : loss;
}

bool gradients_finite(const std::vector<torch::Tensor>& params) {
  // One host sync for all tensors: the largest |g| is finite iff every g is (max propagates NaN).
  std::vector<torch::Tensor> maxima;
  for (const auto& p : params)
    if (p.grad().defined()) maxima.push_back(p.grad().detach().abs().max().to(torch::kFloat));
  if (maxima.empty()) return true;
  return torch::isfinite(torch::stack(maxima).max()).item<bool>();
}

bool GradScaler::unscale_and_check(const std::vector<torch::Tensor>& params) const {
  if (enabled_) {
    torch::NoGradGuard no_grad;
    for (const auto& p : params)
      if (p.grad().defined()) p.mutable_grad().mul_(1.0 / scale_);
  }
  return gradients_finite(params);
}

void GradScaler::update(bool found_nonfinite) {
  if (!enabled_) return;
  if (found_nonfinite) {
    scale_ *= backoff_factor_;
    growth_tracker_ = 0;
    return;
  }
  if (++growth_tracker_ >= growth_interval_) {
    scale_ *= growth_factor_;
    growth_tracker_ = 0;
  }
}

void GradScaler::restore(double scale, int64_t growth_tracker) {
  if (!enabled_) return;
  scale_ = scale;
  growth_tracker_ = growth_tracker;
}

}  // namespace arcforge::train
