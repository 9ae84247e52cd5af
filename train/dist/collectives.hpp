#pragma once
// The collective operations distributed training needs, over PyTorch's c10d (no home-made
// transport): a TCPStore rendezvous at MASTER_ADDR:MASTER_PORT, then a Gloo process group (CPU
// tensors, and CUDA tensors through host copies) or, on GPUs, NCCL. A world of one needs neither: every operation is
// then the identity, so the trainer has one code path.
//
// Failures are bounded: every operation gives up after the configured timeout, and a peer that
// dies closes its sockets, which fails the others at once. Either way the caller gets
// CollectiveError naming this rank, the operation and what c10d said; nothing hangs.
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>

#include "arcforge/common/error.hpp"
#include "train/dist/dist_env.hpp"

namespace arcforge::train::dist {

class CollectiveError : public Error {
 public:
  using Error::Error;
};

enum class Reduce { sum, max, min };

// An operation in flight; wait() throws CollectiveError when it failed.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

class Collectives {
 public:
  Collectives(int rank, int world_size) : rank_(rank), world_size_(world_size) {}
  virtual ~Collectives() = default;
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

  // In place over every rank's `tensor` (contiguous, same shape and dtype everywhere).
  virtual std::unique_ptr<PendingCollective> allreduce_async(torch::Tensor tensor, Reduce op) = 0;
  void allreduce(torch::Tensor tensor, Reduce op) { allreduce_async(std::move(tensor), op)->wait(); }
  // Every rank's `tensor` (same shape everywhere) concatenated along dim 0, in rank order.
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  // Copies root's `tensor` into every rank's, in place.
  virtual void broadcast(torch::Tensor tensor, int root) = 0;
  virtual void barrier() = 0;

 private:
  int rank_;
  int world_size_;
};

// Root's values of many tensors (parameters, BatchNorm buffers) into every rank's, in place, with
// one broadcast per dtype instead of one per tensor.
void broadcast_all(Collectives& collectives, const std::vector<torch::Tensor>& tensors, int root);

// The world of one process.
std::shared_ptr<Collectives> single_process_collectives();

// Joins the process group described by `env` (no group at all for a plain single-process run).
// backend: "gloo", "nccl" (CUDA builds with NCCL), or "auto" (NCCL for CUDA where built, else
// Gloo). timeout bounds the rendezvous and every later operation.
std::shared_ptr<Collectives> connect(const DistEnv& env, const std::string& backend, bool cuda,
                                     std::chrono::milliseconds timeout);

// Whether this build can join a world of more than one process (c10d with Gloo).
bool multi_process_supported();

}  // namespace arcforge::train::dist
