// PrefetchedBatches: the batches are exactly the inner source's, made on one worker thread (the
// next one ahead, never past the end), errors surface for the index that caused them, and a
// source being destroyed mid-batch neither hangs nor crashes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "train/train/batch_source.hpp"
#include "train/train/config.hpp"
#include "train/train/prefetched_batches.hpp"

using namespace arcforge::train;

namespace {

struct Call {
  int64_t index;
  std::thread::id thread;
  int threads;
};

// What a RecordingBatches made, kept apart from it: the source dies with its PrefetchedBatches.
struct CallLog {
  std::mutex mutex;
  std::vector<Call> calls;
  std::vector<Call> read() {
    std::lock_guard<std::mutex> lock(mutex);
    return calls;
  }
};

// Records, for every batch it makes, the index, the thread and that thread's intra-op count.
class RecordingBatches : public BatchSource {
 public:
  explicit RecordingBatches(std::shared_ptr<CallLog> log, int64_t failing_index = -1,
                            std::chrono::milliseconds delay = {})
      : log_(std::move(log)), failing_index_(failing_index), delay_(delay) {}
  Batch batch(int64_t index, torch::Device device) override {
    std::this_thread::sleep_for(delay_);
    {
      std::lock_guard<std::mutex> lock(log_->mutex);
      log_->calls.push_back({index, std::this_thread::get_id(), at::get_num_threads()});
    }
    if (index == failing_index_) throw std::runtime_error("batch " + std::to_string(index) + " is unreadable");
    return Batch{torch::full({2, 3, 4, 4}, static_cast<double>(index), torch::TensorOptions().device(device)),
                 torch::full({2}, index, torch::TensorOptions().dtype(torch::kInt64).device(device))};
  }

 private:
  std::shared_ptr<CallLog> log_;
  int64_t failing_index_;
  std::chrono::milliseconds delay_;
};

std::vector<int64_t> indices(const std::vector<Call>& calls) {
  std::vector<int64_t> out;
  for (const auto& c : calls) out.push_back(c.index);
  return out;
}

}  // namespace

TEST(PrefetchedBatches, RendersExactlyTheInnerSourcesBatches) {
  TrainConfig config = parse_config("", {"data.num_identities=40", "train.batch_size=6", "train.device=cpu"});
  auto direct = make_batch_source(config, torch::kCPU);
  PrefetchedBatches ahead(make_batch_source(config, torch::kCPU), torch::kCPU, 100);
  // In order, then a jump forward, a step back and a repeat (a resume, or a caller that skips).
  for (int64_t index : {0, 1, 2, 7, 8, 3, 3}) {
    const Batch want = direct->batch(index, torch::kCPU);
    const Batch got = ahead.batch(index, torch::kCPU);
    EXPECT_TRUE(torch::equal(got.images, want.images)) << "batch " << index;
    EXPECT_TRUE(torch::equal(got.labels, want.labels)) << "batch " << index;
  }
  EXPECT_THROW(ahead.batch(4, torch::Device(torch::kCUDA, 0)), std::logic_error);
}

TEST(PrefetchedBatches, MakesTheNextOneAheadOnOneWorkerThreadAndStopsAtTheEnd) {
  at::set_num_threads(1);
  auto log = std::make_shared<CallLog>();
  {
    PrefetchedBatches ahead(std::make_unique<RecordingBatches>(log), torch::kCPU, 3);
    for (int64_t index = 0; index < 3; ++index)
      EXPECT_EQ(ahead.batch(index, torch::kCPU).labels[0].item<int64_t>(), index);
  }  // joins the worker
  at::set_num_threads(2);
  const auto calls = log->read();
  // Each batch made once: 1 and 2 were made ahead and used; nothing at or past the end of 3.
  EXPECT_EQ(indices(calls), (std::vector<int64_t>{0, 1, 2}));
  for (const auto& c : calls) {
    EXPECT_EQ(c.thread, calls.front().thread);
    EXPECT_NE(c.thread, std::this_thread::get_id());
    EXPECT_EQ(c.threads, 1) << "the worker did not take the caller's intra-op thread count";
  }
}

TEST(PrefetchedBatches, AnErrorSurfacesForTheBatchThatCausedIt) {
  auto log = std::make_shared<CallLog>();
  {
    PrefetchedBatches ahead(std::make_unique<RecordingBatches>(log, /*failing_index=*/2), torch::kCPU, 10);
    EXPECT_NO_THROW(ahead.batch(0, torch::kCPU));
    EXPECT_NO_THROW(ahead.batch(1, torch::kCPU));  // batch 2 fails meanwhile, ahead, unreported
    try {
      ahead.batch(2, torch::kCPU);
      FAIL() << "expected the inner source's error";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "batch 2 is unreadable");
    }
    // After a failure nothing is made ahead; the next batch is made on request, then 4 ahead.
    EXPECT_EQ(ahead.batch(3, torch::kCPU).labels[0].item<int64_t>(), 3);
  }
  // Batch 4 was requested ahead; the destructor drops it unless the worker had started it.
  auto made = indices(log->read());
  if (made.size() == 5) {
    EXPECT_EQ(made.back(), 4);
  }
  made.resize(4);
  EXPECT_EQ(made, (std::vector<int64_t>{0, 1, 2, 3}));
}

TEST(PrefetchedBatches, DestroyedWhileMakingOneAhead) {
  auto log = std::make_shared<CallLog>();
  PrefetchedBatches ahead(std::make_unique<RecordingBatches>(log, -1, std::chrono::milliseconds(50)), torch::kCPU, 10);
  ahead.batch(0, torch::kCPU);
  // Batch 1 is being made now; the destructor waits for it and returns.
}

// wait_idle (before a CUDA graph capture) returns only once the batch ahead is made, and that batch
// is the one handed out next: nothing is made twice or lost.
TEST(PrefetchedBatches, WaitIdleReturnsOnceTheBatchAheadIsMade) {
  auto log = std::make_shared<CallLog>();
  PrefetchedBatches ahead(std::make_unique<RecordingBatches>(log, -1, std::chrono::milliseconds(60)), torch::kCPU, 10);
  EXPECT_EQ(ahead.batch(0, torch::kCPU).images.flatten()[0].item<double>(), 0.0);
  ahead.wait_idle();
  EXPECT_EQ(indices(log->read()), (std::vector<int64_t>{0, 1}));
  ahead.wait_idle();  // idle already: returns at once
  EXPECT_EQ(ahead.batch(1, torch::kCPU).images.flatten()[0].item<double>(), 1.0);
  ahead.wait_idle();
  EXPECT_EQ(indices(log->read()), (std::vector<int64_t>{0, 1, 2}));
}
