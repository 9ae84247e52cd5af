#pragma once
// The non-finite guard kept on the device (train.deferred_verdict): each step's verdict decides on
// the device whether its update applies (masked_sgd_step), and the host reads the tally only when
// it reports (every log.every steps, before a checkpoint or an evaluation, at the end). Same
// outcome as reading every step: a non-finite step changes nothing and is counted; after
// `max_consecutive` of them in a row no later update applies either, so that when the host sees
// it the weights are still the last good ones, and it stops the run naming that step.
#include <torch/torch.h>

#include <cstdint>

namespace arcforge::train {

class StepTally {
 public:
  // `consecutive`: non-finite steps in a row just before the first recorded one.
  StepTally(torch::Device device, int64_t max_consecutive, int64_t consecutive = 0);

  // Records step `step` (finite: bool scalar on the device, loss: its loss) and returns whether its
  // update applies (bool scalar on the device): finite, and the run not stopped before it.
  torch::Tensor record(const torch::Tensor& finite, const torch::Tensor& loss, int64_t step);

  struct Report {
    int64_t skipped = 0;      // non-finite steps since the last report
    int64_t consecutive = 0;  // non-finite steps in a row at the end (up to the stop)
    double loss_sum = 0;      // over the applied steps since the last report
    int64_t applied = 0;
    int64_t stop_step = -1;   // the step that made max_consecutive in a row, or -1
  };
  // One host read; the next report counts from here (the run of consecutive steps carries on).
  Report report();

 private:
  torch::Tensor state_;  // double [skipped, consecutive, loss_sum, applied, stop_step]
  int64_t max_consecutive_;
};

}  // namespace arcforge::train
