#pragma once
// Partial FC, as InsightFace's arcface_torch v2 defines it, in one file:
//   - the class-centre matrix is sharded by rows across ranks (model parallel): rank r holds the
//     classes [start, start + count) of the `total`;
//   - each step, every rank all-gathers the embeddings (with gradient) and labels of the global
//     batch;
//   - with sample_rate < 1 each rank keeps all positives of the global batch that fall in its
//     shard and fills up to floor(sample_rate * count) centres with random negatives (when the
//     global batch is no larger than that count, as in any real configuration, without reading
//     anything back from the device);
//   - the margin goes only on positives; the softmax normaliser and the row maximum are
//     all-reduced, so every rank computes the same global loss (the mean over the global batch);
//   - backward: the gradient of the gathered embeddings is summed over ranks and each rank keeps
//     its own rows, multiplied by the world size because the data-parallel backbone gradient is
//     averaged afterwards (so the backbone sees the gradient of the global mean loss).
// sample_rate 1.0 is plain model parallelism; one rank with sample_rate 1.0 is the ordinary head.
#include <torch/torch.h>

#include <memory>

#include "train/dist/collectives.hpp"
#include "train/nn/margin.hpp"

namespace arcforge::train::dist {

struct ClassShard {
  int64_t start = 0;
  int64_t count = 0;
  int64_t total = 0;
};

// InsightFace's split: count = total / W, plus one for the first total % W ranks.
ClassShard class_shard(int64_t total, int rank, int world_size);

// Every rank's `local` rows [B, ...] (same B everywhere) concatenated in rank order, with the
// gradient sent back to its owner (summed over ranks, times `grad_scale`).
torch::Tensor all_gather_with_grad(const torch::Tensor& local, Collectives& collectives,
                                   double grad_scale);

// Mean cross-entropy over the rows of logits that are split by columns across ranks: `logits`
// [N, K_r] fp32 are this rank's columns, `labels` [N] the target column within them or -1 when the
// target lives on another rank. Every row must have its target on exactly one rank. Label smoothing
// spreads eps over all K = sum K_r columns, as nn::margin_cross_entropy does. Same value on every
// rank; the gradient of each rank's columns is exact.
torch::Tensor distributed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                        double label_smoothing, Collectives& collectives);

// The shard rows one step uses, ascending: every positive (the rows `local` [N] names where
// `in_shard` [N] is true), then random negatives by a uniform priority draw up to `num_sample` of
// the shard's `count` rows; all positives alone when they outnumber num_sample (arcface_torch's
// rule). When N <= num_sample nothing is read back from the device.
torch::Tensor sample_centres(const torch::Tensor& local, const torch::Tensor& in_shard, int64_t count,
                             int64_t num_sample);

struct PartialFCOutput {
  torch::Tensor loss;            // scalar, the global mean loss (same on every rank)
  torch::Tensor sampled;         // [S] int64: the shard rows used this step, ascending
  torch::Tensor global_labels;   // [B*W] the gathered labels
  torch::Tensor local_labels;    // [B*W] each label's column among `sampled`, -1 when on another rank
};

class PartialFC {
 public:
  // `weight` is this rank's shard [count, D] (a parameter of the caller's head module).
  PartialFC(ClassShard shard, double sample_rate, std::shared_ptr<Collectives> collectives);

  // embeddings [B, D] fp32, labels [B] global class ids of this rank's batch.
  PartialFCOutput forward(const torch::Tensor& weight, const torch::Tensor& embeddings,
                          const torch::Tensor& labels, nn::MarginImpl& margin, double label_smoothing);

  const ClassShard& shard() const { return shard_; }
  int64_t num_sample() const { return num_sample_; }

 private:
  ClassShard shard_;
  double sample_rate_;
  int64_t num_sample_;
  std::shared_ptr<Collectives> collectives_;
};

}  // namespace arcforge::train::dist
