#pragma once
// Makes batch k+1 on a worker thread while the trainer runs step k. Rendering `synth` faces and
// augmenting a real batch on the GPU are hundreds of small ops issued one by one from the host;
// made ahead, they are queued between the previous step's kernels instead of in front of the next
// step's forward pass. Every batch, the first included, is made on the one worker thread with the
// caller's intra-op thread count, and batch k is a pure function of k (BatchSource's contract),
// so the batches are exactly the inner source's, ahead or not.
#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "train/train/batch_source.hpp"

namespace arcforge::train {

class PrefetchedBatches : public BatchSource {
 public:
  // Indices at or past `end` are never made ahead (the run's last batch is end - 1).
  PrefetchedBatches(std::unique_ptr<BatchSource> inner, torch::Device device, int64_t end);
  ~PrefetchedBatches() override;
  PrefetchedBatches(const PrefetchedBatches&) = delete;
  PrefetchedBatches& operator=(const PrefetchedBatches&) = delete;

  // Batch `index` on `device` (the constructor's): the one made ahead when it is that index, else
  // made now on the worker. An error making it is thrown here, for the index that caused it.
  Batch batch(int64_t index, torch::Device device) override;
  // Waits for the batch in hand to be made (it stays made for the next batch() call).
  void wait_idle() override;

 private:
  void work(int threads);
  void request(int64_t index);  // caller holds mutex_

  std::unique_ptr<BatchSource> inner_;
  const torch::Device device_;
  const int64_t end_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<int64_t> requested_;  // the index the worker is to make next
  std::optional<int64_t> made_;       // the index of made_batch_ / made_error_
  Batch made_batch_;
  std::exception_ptr made_error_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace arcforge::train
