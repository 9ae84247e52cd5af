#include "train/dist/grad_reducer.hpp"

namespace arcforge::train::dist {

GradientReducer::GradientReducer(std::vector<torch::Tensor> params,
                                 std::shared_ptr<Collectives> collectives, double bucket_mb,
                                 bool fp16_compress)
    : params_(std::move(params)), collectives_(std::move(collectives)), fp16_compress_(fp16_compress) {
  if (collectives_->world_size() == 1) return;
  const auto bucket_bytes = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  slots_.resize(params_.size());
  arrived_.assign(params_.size(), false);
  // Reverse order: the last layers' gradients come first in backward.
  int64_t filled = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const torch::Tensor& p = params_[k];
    const bool new_bucket = buckets_.empty() || filled >= bucket_bytes ||
                            buckets_.back().flat.scalar_type() != p.scalar_type() ||
                            buckets_.back().flat.device() != p.device();
    if (new_bucket) {
      buckets_.emplace_back();
      buckets_.back().flat = torch::empty({0}, p.options());
      filled = 0;
    }
    Bucket& bucket = buckets_.back();
    slots_[k] = Slot{buckets_.size() - 1, bucket.flat.size(0)};
    bucket.params.push_back(k);
    bucket.flat = torch::empty({bucket.flat.size(0) + p.numel()}, p.options());
    filled += p.numel() * static_cast<int64_t>(p.element_size());
  }
  for (Bucket& bucket : buckets_) {
    bucket.flat.zero_();
    if (fp16_compress_) bucket.wire = torch::empty_like(bucket.flat, torch::kHalf);
  }
  for (size_t k = 0; k < params_.size(); ++k)
    hooks_.push_back(params_[k].register_hook([this, k](torch::Tensor grad) { on_gradient(k, grad); }));
}

GradientReducer::~GradientReducer() {
  for (size_t k = 0; k < hooks_.size(); ++k) params_[k].remove_hook(hooks_[k]);
}

torch::Tensor GradientReducer::view_in_bucket(size_t index) {
  const torch::Tensor& p = params_[index];
  const Slot& slot = slots_[index];
  torch::Tensor piece = buckets_[slot.bucket].flat.narrow(0, slot.offset, p.numel());
  // Keep the parameter's layout (channels-last weights stay channels-last) when it is dense.
  if (p.is_contiguous() || p.is_contiguous(at::MemoryFormat::ChannelsLast))
    return piece.as_strided(p.sizes(), p.strides());
  return piece.view(p.sizes());
}

void GradientReducer::arm() {
  if (collectives_->world_size() == 1) return;
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = true;
  started_early_ = 0;
}

void GradientReducer::on_gradient(size_t index, const torch::Tensor& grad) {
  if (!armed_) return;
  // Earlier micro-batches of this step left their sum in .grad; autograd adds this one after us.
  const torch::Tensor& accumulated = params_[index].grad();
  view_in_bucket(index).copy_(accumulated.defined() ? accumulated + grad : grad);
  std::lock_guard<std::mutex> lock(mutex_);
  if (arrived_[index]) return;
  arrived_[index] = true;
  if (++buckets_[slots_[index].bucket].ready == buckets_[slots_[index].bucket].params.size()) {
    const size_t before = next_to_start_;
    start_ready_buckets();
    started_early_ += next_to_start_ - before;
  }
}

void GradientReducer::start_ready_buckets() {
  while (next_to_start_ < buckets_.size() &&
         buckets_[next_to_start_].ready == buckets_[next_to_start_].params.size())
    start(buckets_[next_to_start_++]);
}

void GradientReducer::start(Bucket& bucket) {
  if (fp16_compress_) {
    // Divide before the sum, as DDP's fp16 compression hook does, so the fp16 sum cannot overflow.
    bucket.wire.copy_(bucket.flat).mul_(1.0 / collectives_->world_size());
    bucket.pending = collectives_->allreduce_async(bucket.wire, Reduce::sum);
  } else {
    bucket.pending = collectives_->allreduce_async(bucket.flat, Reduce::sum);
  }
}

void GradientReducer::finish() {
  if (collectives_->world_size() == 1) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // A parameter that took no part in this step's graph contributes zeros, as in DDP with
    // find_unused_parameters; every rank then still starts every bucket, in order.
    for (size_t k = 0; k < params_.size(); ++k) {
      if (arrived_[k]) continue;
      const torch::Tensor& accumulated = params_[k].grad();
      if (accumulated.defined())
        view_in_bucket(k).copy_(accumulated);
      else
        view_in_bucket(k).zero_();
      arrived_[k] = true;
      ++buckets_[slots_[k].bucket].ready;
    }
    start_ready_buckets();
    armed_ = false;
  }
  const double inverse_world = 1.0 / collectives_->world_size();
  for (Bucket& bucket : buckets_) {
    bucket.pending->wait();
    bucket.pending.reset();
    if (fp16_compress_)
      bucket.flat.copy_(bucket.wire);
    else
      bucket.flat.mul_(inverse_world);
    bucket.ready = 0;
  }
  for (size_t k = 0; k < params_.size(); ++k) {
    params_[k].mutable_grad() = view_in_bucket(k);
    arrived_[k] = false;
  }
  next_to_start_ = 0;
}

}  // namespace arcforge::train::dist
