#pragma once
// log.profile: a Chrome trace (chrome://tracing, Perfetto) of a few training steps, from PyTorch's
// own profiler: every libtorch operator the step issues, forward and backward, with its host time,
// as torch.profiler's trace gives a Python user. On CUDA the times are those of issuing the work
// (kernels run asynchronously); log.phase_timing gives per-phase device times.
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>

namespace arcforge::train {

// The first steps of a run pay for allocator growth and kernel selection: throughput leaves them
// out (trainer.cpp), and so does the trace.
inline constexpr int64_t kWarmUpSteps = 3;

// The steps traced: `steps` of them, after the warm-up steps where the run is long enough, else
// as late as the run allows.
struct TracedSteps {
  int64_t first = 0, count = 0;
};
TracedSteps traced_steps(int64_t first_step_of_run, int64_t total_steps, int64_t steps);

class StepTrace {
 public:
  // An empty path traces nothing. Throws ConfigError where this libtorch has no profiler to trace with.
  StepTrace(std::string path, TracedSteps steps);
  ~StepTrace();
  StepTrace(const StepTrace&) = delete;
  StepTrace& operator=(const StepTrace&) = delete;

  void before_step(int64_t step);
  // After step `step`; writes the trace (atomically) after the last traced step.
  void after_step(int64_t step);

 private:
  void finish();
  struct Recording;  // PyTorch's profiler, on while the traced steps run

  std::string path_;
  TracedSteps steps_;
  int64_t last_traced_ = -1;
  std::ostringstream events_;
  std::unique_ptr<Recording> recording_;
};

}  // namespace arcforge::train
