#include "train/train/step_tally.hpp"

namespace arcforge::train {
namespace {
enum Slot : int64_t { kSkipped, kConsecutive, kLossSum, kApplied, kStopStep, kSlots };
}

StepTally::StepTally(torch::Device device, int64_t max_consecutive, int64_t consecutive)
    : state_(torch::zeros({kSlots}, torch::TensorOptions().dtype(torch::kDouble).device(device))),
      max_consecutive_(max_consecutive) {
  state_[kConsecutive].fill_(static_cast<double>(consecutive));
  state_[kStopStep].fill_(-1.0);
}

torch::Tensor StepTally::record(const torch::Tensor& finite, const torch::Tensor& loss, int64_t step) {
  torch::NoGradGuard no_grad;
  const torch::Tensor running = state_[kStopStep] < 0;
  const torch::Tensor apply = finite.logical_and(running);
  const torch::Tensor skip = finite.logical_not().logical_and(running);
  const torch::Tensor consecutive =
      torch::where(running, torch::where(finite, torch::zeros_like(state_[kConsecutive]), state_[kConsecutive] + 1),
                   state_[kConsecutive]);
  const torch::Tensor stops = skip.logical_and(consecutive >= static_cast<double>(max_consecutive_));
  // Every slot in one write: [skipped + skip, consecutive, loss_sum + loss, applied + apply, stop].
  const torch::Tensor next = torch::stack({
      state_[kSkipped] + skip.to(torch::kDouble),
      consecutive,
      state_[kLossSum] + torch::where(apply, loss.to(torch::kDouble), torch::zeros_like(state_[kLossSum])),
      state_[kApplied] + apply.to(torch::kDouble),
      torch::where(stops, torch::full_like(state_[kStopStep], static_cast<double>(step)), state_[kStopStep]),
  });
  state_.copy_(next);
  return apply;
}

StepTally::Report StepTally::report() {
  const torch::Tensor host = state_.to(torch::kCPU);
  const double* v = host.data_ptr<double>();
  Report r;
  r.skipped = static_cast<int64_t>(v[kSkipped]);
  r.consecutive = static_cast<int64_t>(v[kConsecutive]);
  r.loss_sum = v[kLossSum];
  r.applied = static_cast<int64_t>(v[kApplied]);
  r.stop_step = static_cast<int64_t>(v[kStopStep]);
  // The window's sums start again; the run of consecutive skips and the stop carry on.
  torch::NoGradGuard no_grad;
  state_[kSkipped].zero_();
  state_[kLossSum].zero_();
  state_[kApplied].zero_();
  return r;
}

}  // namespace arcforge::train
