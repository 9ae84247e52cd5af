#include "train/train/step_trace.hpp"

#include <algorithm>
#include <filesystem>
#include <ostream>

// PyTorch's profiler with the Chrome-trace writer (libtorch 1.13 and 2.x alike); guarded so that a
// libtorch without it still builds and refuses log.profile by name.
#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define ARCFORGE_HAVE_RECORD_PROFILE 1
#endif

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"

namespace arcforge::train {

#ifdef ARCFORGE_HAVE_RECORD_PROFILE
struct StepTrace::Recording {
  explicit Recording(std::ostream& out) : profile(out) {}
  torch::autograd::profiler::RecordProfile profile;  // writes the events to `out` when destroyed
};
#else
struct StepTrace::Recording {
  explicit Recording(std::ostream&) {}
};
#endif

TracedSteps traced_steps(int64_t first_step_of_run, int64_t total_steps, int64_t steps) {
  const int64_t remaining = std::max<int64_t>(0, total_steps - first_step_of_run);
  const int64_t count = std::min(steps, remaining);
  return {first_step_of_run + std::min(kWarmUpSteps, remaining - count), count};
}

StepTrace::StepTrace(std::string path, TracedSteps steps) : path_(std::move(path)), steps_(steps) {
  if (path_.empty()) return;
#ifndef ARCFORGE_HAVE_RECORD_PROFILE
  throw ConfigError("log.profile: this libtorch has no profiler_legacy.h to trace with");
#endif
  // Refused before training rather than after the traced steps.
  const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent))
    throw ConfigError("log.profile: " + path_ + ": the folder " + parent.string() + " does not exist");
}

StepTrace::~StepTrace() {
  // A run stopped inside the traced steps still leaves what was recorded.
  try {
    finish();
  } catch (const std::exception& e) {
    log::warn(log::cat("log.profile: ", e.what()));
  }
}

void StepTrace::before_step(int64_t step) {
  if (path_.empty() || steps_.count == 0 || step != steps_.first) return;
  recording_ = std::make_unique<Recording>(events_);
}

void StepTrace::after_step(int64_t step) {
  if (!recording_) return;
  last_traced_ = step;
  if (step + 1 == steps_.first + steps_.count) finish();
}

void StepTrace::finish() {
  if (!recording_) return;
  recording_.reset();  // writes the events to events_
  write_file_atomically(path_, events_.str());
  log::info(log::cat("log.profile: steps ", steps_.first, " to ", last_traced_, " traced to ", path_,
                     " (chrome://tracing or ui.perfetto.dev)"));
}

}  // namespace arcforge::train
