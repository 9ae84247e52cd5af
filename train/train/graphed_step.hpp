#pragma once
// train.cuda_graph: the device work of a training step (BatchNorm snapshot, forward, loss,
// backward, unscaling, clipping, the finiteness verdict) recorded once as a CUDA graph and then
// replayed as one launch per step, so that the GPU stops waiting for the host to issue hundreds of
// small kernels one by one. The host keeps everything that must see the verdict: the learning
// rate, the optimizer step or the skip, the loss scale (a device tensor, GradScaler::keep_on_device).
//
// The first `warmup_steps` steps of a run are eager, on the capture stream: cuDNN's benchmark and
// lazy initialisation must not happen under capture. The next step is captured, then replayed, and
// so is every later one. Gradients are cleared (set to none) before each eager step and before the
// capture, never after: the graph's backward writes them in place at every replay.
// Needs one process, every batch the same shape, and no host synchronisation inside the work
// (what log.sync_check verifies).
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

#include "train/compat/cuda_graph.hpp"
#include "train/train/batch_source.hpp"

namespace arcforge::train {

// Batches copied into buffers that keep their addresses, as a CUDA graph's inputs must.
class StaticBatches {
 public:
  // The first call allocates the buffers (same shape, dtype, device and memory format); every call
  // copies `batches` into them. A batch of another shape is an InputError.
  const std::vector<Batch>& stage(const std::vector<Batch>& batches);

 private:
  std::vector<Batch> buffers_;
};

class GraphedStep {
 public:
  // Disabled: run() is an eager step. Enabled: constructs the graph (throws without CUDA).
  explicit GraphedStep(bool enabled, int64_t warmup_steps = 2);

  bool enabled() const { return graph_ != nullptr; }
  // Whether run(steps_done) captures: it synchronises the device, so no sync check then.
  bool captures_at(int64_t steps_done) const;
  bool replaying() const { return graph_ && graph_->captured(); }

  // The batches the work must read. Eager: `batches` themselves. Graphed: copies in buffers whose
  // addresses never change (the graph reads them); a batch of another shape is an InputError.
  const std::vector<Batch>& stage(std::vector<Batch> batches);

  // One step's device work: `work` run eagerly after clearing the gradients of `params`, or, at
  // steps_done == warmup_steps, captured and then replayed; replayed from then on.
  void run(int64_t steps_done, const std::function<void()>& work, const std::vector<torch::Tensor>& params);

 private:
  int64_t warmup_steps_;
  std::unique_ptr<compat::CudaGraph> graph_;
  std::vector<Batch> eager_inputs_;
  StaticBatches static_inputs_;
};

}  // namespace arcforge::train
