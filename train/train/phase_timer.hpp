#pragma once
// Where a training step's time goes (`log.phase_timing = true`). Each mark() closes a phase of the
// step: `host_ms` is how long the host took to issue the phase's work, `done_ms` how long until the
// device had finished it. A device synchronisation follows every mark, so phases do not overlap and
// a timed run is slower than an untimed one: this finds the bottleneck, it does not measure speed.
// host close to done: the device waited for the host (launch-bound; fewer, larger kernels or CUDA
// graphs help). done well above host: the device is the bottleneck (kernel efficiency). On the CPU
// the two are equal.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace arcforge::train {

struct PhaseTime {
  std::string phase;
  double host_ms = 0;  // mean over the kept steps
  double done_ms = 0;
};

class PhaseTimer {
 public:
  PhaseTimer(bool enabled, torch::Device device);

  bool enabled() const { return enabled_; }
  // Begins a step (synchronises first, so that earlier work is not counted in its first phase).
  void start_step();
  // Closes the phase that began at the last mark or at start_step.
  void mark(const char* phase);
  // Ends the step; its phases count in summary() when `keep` (steps after the warm-up).
  void end_step(bool keep);
  // Mean times per phase over the kept steps, in the order the phases first appeared.
  std::vector<PhaseTime> summary() const;

 private:
  void synchronize() const;

  bool enabled_;
  torch::Device device_;
  std::chrono::steady_clock::time_point phase_start_;
  std::vector<PhaseTime> step_;    // this step's phases, summed (a phase may repeat per micro-batch)
  std::vector<PhaseTime> totals_;  // kept steps, summed
  int64_t kept_steps_ = 0;
};

// {"<phase>": {"host": ms, "done": ms}, ...}, for the metrics log and `train --json`.
nlohmann::json phase_json(const std::vector<PhaseTime>& phases);

}  // namespace arcforge::train
