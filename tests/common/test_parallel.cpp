// parallel_for_each: every index once, the caller's thread working too, and the first failure
// stopping the rest and reaching the caller.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "arcforge/common/parallel.hpp"

TEST(ParallelForEach, EveryIndexExactlyOnceOnUpToWorkersThreads) {
  for (const int workers : {-3, 0, 1, 2, 4, 16}) {
    std::vector<std::atomic<int>> calls(100);
    std::mutex mutex;
    std::set<std::thread::id> threads;
    arcforge::parallel_for_each(calls.size(), workers, [&](size_t i) {
      ++calls[i];
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // let every worker take some
      std::lock_guard<std::mutex> lock(mutex);
      threads.insert(std::this_thread::get_id());
    });
    for (size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i].load(), 1) << i << " with " << workers << " workers";
    EXPECT_LE(threads.size(), static_cast<size_t>(std::max(1, workers)));
    if (workers <= 1) {
      EXPECT_EQ(*threads.begin(), std::this_thread::get_id());  // no helper thread
    }
  }
  int called = 0;
  arcforge::parallel_for_each(0, 4, [&](size_t) { ++called; });
  EXPECT_EQ(called, 0);
}

TEST(ParallelForEach, TheFirstFailureStopsTheRestAndIsRethrown) {
  std::atomic<int> started{0};
  try {
    arcforge::parallel_for_each(2'000, 2, [&](size_t i) {
      ++started;
      if (i == 3) throw std::runtime_error("photo 3 is unreadable");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // 2 s in all if nothing stopped
    });
    ADD_FAILURE() << "the failure must reach the caller";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "photo 3 is unreadable");
  }
  EXPECT_LT(started.load(), 100);  // the others stopped taking indices
}

TEST(ParallelForEach, WorkerCountDefaultsToTheMachine) {
  EXPECT_EQ(arcforge::worker_count(3), 3);
  EXPECT_EQ(arcforge::worker_count(0), static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_GE(arcforge::worker_count(-1), 1);
}
