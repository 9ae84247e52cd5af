#pragma once
// Data-parallel gradient averaging, overlapped with backward (what DDP's reducer does):
// parameters are packed, in reverse registration order (roughly the order backward produces their
// gradients), into flat buckets of about bucket_mb; a hook on each parameter copies its gradient
// into its bucket as soon as autograd computes it, and a full bucket's all-reduce starts at once
// while backward goes on. Buckets start strictly in index order, so every rank issues the same
// collectives in the same order. finish() starts what is left (a parameter that got no gradient
// contributes zeros), waits, divides by the world size and leaves each parameter's .grad as a view
// into its bucket. fp16_compress halves the bytes on the wire (each rank's share is divided by
// the world size first, then summed in fp16).
//
// Use: arm() before the backward of the last micro-batch of a step (earlier micro-batches only
// accumulate locally), then backward, then finish(). A world of one does nothing.
#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <vector>

#include "train/dist/collectives.hpp"

namespace arcforge::train::dist {

class GradientReducer {
 public:
  GradientReducer(std::vector<torch::Tensor> params, std::shared_ptr<Collectives> collectives,
                  double bucket_mb = 25.0, bool fp16_compress = false);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  void arm();
  void finish();
  size_t num_buckets() const { return buckets_.size(); }
  // How many buckets were started from backward hooks (not by finish) in the last step.
  size_t started_during_backward() const { return started_early_; }

 private:
  struct Slot {
    size_t bucket;
    int64_t offset;
  };
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    torch::Tensor flat;          // gradients, packed in the parameters' own memory layout
    torch::Tensor wire;          // fp16 copy when compressing
    size_t ready = 0;
    std::unique_ptr<PendingCollective> pending;
  };

  void on_gradient(size_t index, const torch::Tensor& grad);
  void start_ready_buckets();  // in index order; called with mutex_ held
  void start(Bucket& bucket);
  torch::Tensor view_in_bucket(size_t index);

  std::vector<torch::Tensor> params_;
  std::vector<unsigned> hooks_;
  std::vector<Slot> slots_;
  std::vector<bool> arrived_;
  std::vector<Bucket> buckets_;
  std::shared_ptr<Collectives> collectives_;
  bool fp16_compress_;
  bool armed_ = false;
  size_t next_to_start_ = 0;
  size_t started_early_ = 0;
  std::mutex mutex_;
};

}  // namespace arcforge::train::dist
