#include "train/train/prefetched_batches.hpp"

#include <ATen/Parallel.h>

#include <stdexcept>
#include <string>

#include "train/compat/torch_compat.hpp"

namespace arcforge::train {

PrefetchedBatches::PrefetchedBatches(std::unique_ptr<BatchSource> inner, torch::Device device, int64_t end)
    : inner_(std::move(inner)), device_(device), end_(end) {
  // The caller's thread count: OpenMP's is per thread, and a new thread would take all cores.
  worker_ = std::thread([this, threads = at::get_num_threads()] { work(threads); });
}

PrefetchedBatches::~PrefetchedBatches() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();  // a batch being made is finished first: its ops are already queued
}

void PrefetchedBatches::request(int64_t index) {
  requested_ = index;
  made_.reset();
  made_batch_ = Batch{};
  made_error_ = nullptr;
  changed_.notify_all();
}

Batch PrefetchedBatches::batch(int64_t index, torch::Device device) {
  if (device != device_)
    throw std::logic_error("PrefetchedBatches: asked for " + device.str() + ", made for " + device_.str());
  std::unique_lock<std::mutex> lock(mutex_);
  // Wait for whatever is in hand; if it is not `index` (the first call, a resume, a skip), make it.
  changed_.wait(lock, [&] { return !requested_; });
  if (made_ != index) {
    request(index);
    changed_.wait(lock, [&] { return !requested_; });
  }
  Batch batch = std::move(made_batch_);
  const std::exception_ptr error = made_error_;
  if (index + 1 < end_ && !error)
    request(index + 1);
  else
    made_.reset();
  lock.unlock();
  if (error) std::rethrow_exception(error);
  return batch;
}

void PrefetchedBatches::wait_idle() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !requested_; });
}

void PrefetchedBatches::work(int threads) {
  at::set_num_threads(threads);
  if (device_.is_cuda() && device_.has_index()) compat::set_cuda_device(device_.index());
  // Batches carry no autograd history, as when the trainer made them on its own thread.
  torch::NoGradGuard no_grad;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || requested_; });
    if (stopping_) return;
    const int64_t index = *requested_;
    lock.unlock();
    Batch batch;
    std::exception_ptr error;
    try {
      batch = inner_->batch(index, device_);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    made_ = index;
    made_batch_ = std::move(batch);
    made_error_ = error;
    requested_.reset();
    changed_.notify_all();
  }
}

}  // namespace arcforge::train
