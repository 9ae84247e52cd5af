#pragma once
// Timing for the DISABLED_ benchmark tests: one warm-up run, then the median of `runs` (single runs
// on a shared VM jump by 2x).
#include <algorithm>
#include <chrono>
#include <vector>

template <typename Fn>
double median_ms(Fn&& run, int runs = 7) {
  run();
  std::vector<double> times;
  for (int k = 0; k < runs; ++k) {
    const auto start = std::chrono::steady_clock::now();
    run();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(times.begin(), times.begin() + runs / 2, times.end());
  return times[runs / 2];
}
