#include "train/train/phase_timer.hpp"

#include <algorithm>
#include <chrono>

namespace arcforge::train {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// The entry for `phase` in `times`, appended when absent.
PhaseTime& entry(std::vector<PhaseTime>& times, const std::string& phase) {
  auto it = std::find_if(times.begin(), times.end(), [&](const PhaseTime& t) { return t.phase == phase; });
  if (it != times.end()) return *it;
  times.push_back({phase, 0, 0});
  return times.back();
}

}  // namespace

PhaseTimer::PhaseTimer(bool enabled, torch::Device device) : enabled_(enabled), device_(device) {}

void PhaseTimer::synchronize() const {
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
}

void PhaseTimer::start_step() {
  if (!enabled_) return;
  synchronize();
  step_.clear();
  phase_start_ = Clock::now();
}

void PhaseTimer::mark(const char* phase) {
  if (!enabled_) return;
  const auto issued = Clock::now();
  synchronize();
  const auto finished = Clock::now();
  PhaseTime& t = entry(step_, phase);
  t.host_ms += ms_between(phase_start_, issued);
  t.done_ms += ms_between(phase_start_, finished);
  phase_start_ = finished;
}

void PhaseTimer::end_step(bool keep) {
  if (!enabled_ || !keep) return;
  for (const PhaseTime& t : step_) {
    PhaseTime& total = entry(totals_, t.phase);
    total.host_ms += t.host_ms;
    total.done_ms += t.done_ms;
  }
  ++kept_steps_;
}

nlohmann::json phase_json(const std::vector<PhaseTime>& phases) {
  nlohmann::json out = nlohmann::json::object();
  for (const PhaseTime& t : phases) out[t.phase] = {{"host", t.host_ms}, {"done", t.done_ms}};
  return out;
}

std::vector<PhaseTime> PhaseTimer::summary() const {
  std::vector<PhaseTime> out = totals_;
  for (PhaseTime& t : out) {
    t.host_ms /= static_cast<double>(kept_steps_);
    t.done_ms /= static_cast<double>(kept_steps_);
  }
  return out;
}

}  // namespace arcforge::train
