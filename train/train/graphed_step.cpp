#include "train/train/graphed_step.hpp"

#include <stdexcept>
#include <string>

#include "arcforge/common/error.hpp"
#include "train/train/step_ops.hpp"

namespace arcforge::train {
namespace {

// Copies `from` into `into` (same shape, dtype and device), keeping `into`'s storage.
void copy_into(torch::Tensor& into, const torch::Tensor& from, const char* what) {
  if (into.sizes() != from.sizes())
    throw InputError("train.cuda_graph: every batch must have the shape of the first (" + std::string(what) +
                     " " + c10::str(into.sizes()) + ", this batch " + c10::str(from.sizes()) + ")");
  into.copy_(from, /*non_blocking=*/true);
}

}  // namespace

GraphedStep::GraphedStep(bool enabled, int64_t warmup_steps) : warmup_steps_(warmup_steps) {
  if (!enabled) return;
  try {
    graph_ = std::make_unique<compat::CudaGraph>();
  } catch (const std::runtime_error& e) {
    throw ConfigError(std::string("train.cuda_graph: ") + e.what());
  }
}

bool GraphedStep::captures_at(int64_t steps_done) const {
  return graph_ && !graph_->captured() && steps_done >= warmup_steps_;
}

const std::vector<Batch>& StaticBatches::stage(const std::vector<Batch>& batches) {
  if (buffers_.empty())
    for (const auto& b : batches) buffers_.push_back({torch::empty_like(b.images), torch::empty_like(b.labels)});
  if (buffers_.size() != batches.size())
    throw std::logic_error("StaticBatches::stage: the number of micro-batches changed");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < batches.size(); ++i) {
    copy_into(buffers_[i].images, batches[i].images, "images");
    copy_into(buffers_[i].labels, batches[i].labels, "labels");
  }
  return buffers_;
}

const std::vector<Batch>& GraphedStep::stage(std::vector<Batch> batches) {
  if (graph_) return static_inputs_.stage(batches);
  eager_inputs_ = std::move(batches);
  return eager_inputs_;
}

void GraphedStep::run(int64_t steps_done, const std::function<void()>& work,
                      const std::vector<torch::Tensor>& params) {
  if (replaying()) {
    graph_->replay();
    return;
  }
  clear_grads(params);
  if (!graph_) {
    work();
    return;
  }
  if (!captures_at(steps_done)) {
    graph_->run_on_capture_stream(work);
    return;
  }
  try {
    graph_->capture(work);
  } catch (const std::exception& e) {
    throw ConfigError(std::string("train.cuda_graph: the training step could not be captured as a CUDA graph (") +
                      e.what() + "); train without train.cuda_graph");
  }
  graph_->replay();  // capture records the work without running it
}

}  // namespace arcforge::train
