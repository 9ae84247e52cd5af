#include "train/dist/partial_fc.hpp"

#include <algorithm>
#include <cmath>

namespace arcforge::train::dist {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Collectives* collectives_of(AutogradContext* ctx) {
  return reinterpret_cast<Collectives*>(ctx->saved_data["collectives"].toInt());
}

// Forward: all-gather. Backward: sum the gradient over ranks, keep this rank's rows.
struct AllGatherFunction : public torch::autograd::Function<AllGatherFunction> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor local, Collectives* collectives,
                               double grad_scale) {
    ctx->saved_data["collectives"] = reinterpret_cast<int64_t>(collectives);
    ctx->saved_data["rows"] = local.size(0);
    ctx->saved_data["grad_scale"] = grad_scale;
    return collectives->all_gather(local.contiguous());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    Collectives* collectives = collectives_of(ctx);
    const int64_t rows = ctx->saved_data["rows"].toInt();
    torch::Tensor summed = grads[0].contiguous().clone();
    collectives->allreduce(summed, Reduce::sum);
    torch::Tensor own = summed.narrow(0, collectives->rank() * rows, rows);
    return {own * ctx->saved_data["grad_scale"].toDouble(), torch::Tensor(), torch::Tensor()};
  }
};

// softmax over columns split across ranks; loss = mean_i [(1-eps) nll_i - eps mean_j log p_ij].
struct DistCrossEntropyFunction : public torch::autograd::Function<DistCrossEntropyFunction> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor logits, torch::Tensor labels,
                               double eps, Collectives* collectives) {
    torch::Tensor row_max = std::get<0>(logits.max(1));  // [N]
    collectives->allreduce(row_max, Reduce::max);
    const torch::Tensor shifted = logits - row_max.unsqueeze(1);
    const torch::Tensor exp = shifted.exp();
    const torch::Tensor valid = labels.ge(0);
    const torch::Tensor target = shifted.gather(1, labels.clamp_min(0).unsqueeze(1)).squeeze(1);
    // One all-reduce for the four row sums: normaliser, target logit, logit sum, target count.
    torch::Tensor sums = torch::stack({exp.sum(1), torch::where(valid, target, torch::zeros_like(target)),
                                       shifted.sum(1), valid.to(logits.scalar_type())},
                                      1)
                             .to(torch::kDouble)
                             .contiguous();
    torch::Tensor columns = torch::full({1}, static_cast<double>(logits.size(1)), sums.options());  // a fill, not a blocking copy
    collectives->allreduce(sums, Reduce::sum);
    collectives->allreduce(columns, Reduce::sum);
    // Nothing here is read back to the host (no stall per step on a GPU): the column count stays
    // a tensor, and the one-target-per-row rule is an immediate error on the CPU and a
    // device-side assertion elsewhere.
    const torch::Tensor one_target_each = sums.select(1, 3).eq(1.0).all();
    if (one_target_each.is_cpu()) {
      if (!one_target_each.item<bool>())
        throw InputError("distributed cross-entropy: every row needs its target class on exactly one "
                         "rank (a label outside the head's classes?)");
    } else {
      at::_assert_async(one_target_each);
    }
    const torch::Tensor log_z = sums.select(1, 0).log();  // [N] double
    const torch::Tensor nll = log_z - sums.select(1, 1);
    torch::Tensor per_row = nll;
    if (eps > 0) per_row = (1 - eps) * nll - eps * (sums.select(1, 2) / columns - log_z);

    const torch::Tensor probabilities = exp / sums.select(1, 0).to(exp.scalar_type()).unsqueeze(1);
    ctx->save_for_backward({probabilities, labels, columns});
    ctx->saved_data["eps"] = eps;
    return per_row.mean().to(logits.scalar_type());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& probabilities = saved[0];
    const torch::Tensor& labels = saved[1];
    const double eps = ctx->saved_data["eps"].toDouble();
    const torch::Tensor& columns = saved[2];  // [1] double: the classes over all ranks
    const torch::Tensor valid = labels.ge(0).to(probabilities.scalar_type()).unsqueeze(1);
    torch::Tensor grad = probabilities.clone();
    grad.scatter_add_(1, labels.clamp_min(0).unsqueeze(1), -(1 - eps) * valid);
    if (eps > 0) grad.sub_((eps / columns).to(grad.scalar_type()));
    grad.mul_(grads[0] / static_cast<double>(probabilities.size(0)));
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

ClassShard class_shard(int64_t total, int rank, int world_size) {
  if (total < world_size)
    throw ConfigError("Partial FC: " + std::to_string(total) + " classes cannot be split over " +
                      std::to_string(world_size) + " ranks");
  const int64_t base = total / world_size;
  const int64_t extra = total % world_size;
  ClassShard shard;
  shard.total = total;
  shard.count = base + (rank < extra ? 1 : 0);
  shard.start = base * rank + std::min<int64_t>(rank, extra);
  return shard;
}

torch::Tensor all_gather_with_grad(const torch::Tensor& local, Collectives& collectives,
                                   double grad_scale) {
  if (collectives.world_size() == 1) return grad_scale == 1.0 ? local : local * grad_scale;
  return AllGatherFunction::apply(local, &collectives, grad_scale);
}

torch::Tensor distributed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                        double label_smoothing, Collectives& collectives) {
  if (logits.dim() != 2 || labels.dim() != 1 || labels.size(0) != logits.size(0))
    throw InputError("distributed cross-entropy: logits [N, K] and labels [N] expected, got " +
                     c10::str(logits.sizes()) + " and " + c10::str(labels.sizes()));
  if (!(label_smoothing >= 0 && label_smoothing < 1))
    throw ConfigError("label_smoothing must be in [0, 1), got " + std::to_string(label_smoothing));
  return DistCrossEntropyFunction::apply(logits.to(torch::kFloat), labels.to(torch::kLong),
                                         label_smoothing, &collectives);
}

torch::Tensor sample_centres(const torch::Tensor& local, const torch::Tensor& in_shard, int64_t count,
                             int64_t num_sample) {
  torch::NoGradGuard no_grad;
  if (local.size(0) > num_sample) {
    // Only a global batch larger than num_sample can hold more positives than that; only then is
    // their count read back (a stall on a GPU), for arcface_torch's rule: all of them, nothing else.
    const torch::Tensor positives = std::get<0>(at::_unique(local.masked_select(in_shard), /*sorted=*/true));
    if (positives.size(0) >= num_sample) return positives;
  }
  // Positives get priority 2, the rest a uniform draw in [0, 1): the top num_sample are all
  // positives plus random negatives. Labels of other shards mark a spare slot past the shard.
  const auto float_options = torch::TensorOptions().dtype(torch::kFloat).device(local.device());
  torch::Tensor priority = torch::cat({torch::rand({count}, float_options), torch::zeros({1}, float_options)});
  priority.index_fill_(0, torch::where(in_shard, local, torch::full_like(local, count)), 2.0);
  return std::get<0>(torch::sort(std::get<1>(priority.narrow(0, 0, count).topk(num_sample))));
}

PartialFC::PartialFC(ClassShard shard, double sample_rate, std::shared_ptr<Collectives> collectives)
    : shard_(shard), sample_rate_(sample_rate), collectives_(std::move(collectives)) {
  if (!(sample_rate > 0 && sample_rate <= 1))
    throw ConfigError("dist.sample_rate must be in (0, 1], got " + std::to_string(sample_rate));
  // arcface_torch: num_sample = int(sample_rate * num_local).
  num_sample_ = std::max<int64_t>(1, static_cast<int64_t>(sample_rate * static_cast<double>(shard.count)));
}

PartialFCOutput PartialFC::forward(const torch::Tensor& weight, const torch::Tensor& embeddings,
                                   const torch::Tensor& labels, nn::MarginImpl& margin,
                                   double label_smoothing) {
  Collectives& c = *collectives_;
  if (weight.size(0) != shard_.count)
    throw ConfigError("Partial FC: the head holds " + std::to_string(weight.size(0)) +
                      " class centres, the shard " + std::to_string(shard_.count));
  PartialFCOutput out;
  // The backbone gradient is averaged over ranks afterwards; scaling by W keeps it the gradient of
  // the global mean loss (arcface_torch's AllGatherFunc does the same).
  const torch::Tensor gathered = all_gather_with_grad(embeddings, c, c.world_size());  // [B*W, D]
  out.global_labels = c.all_gather(labels.to(torch::kLong).contiguous());              // [B*W]
  const torch::Tensor in_shard =
      out.global_labels.ge(shard_.start) & out.global_labels.lt(shard_.start + shard_.count);
  torch::Tensor local = torch::where(in_shard, out.global_labels - shard_.start,
                                     torch::full_like(out.global_labels, -1));
  torch::Tensor centres = weight;
  if (num_sample_ < shard_.count) {
    out.sampled = sample_centres(local, in_shard, shard_.count, num_sample_);
    local = torch::where(in_shard, torch::searchsorted(out.sampled, local.clamp_min(0)), local);
  }
  if (out.sampled.defined())
    centres = weight.index_select(0, out.sampled);
  else
    out.sampled = torch::arange(shard_.count, local.options());

  const torch::Tensor cosines = nn::normalized_cosines(gathered, centres);  // [B*W, S] fp32
  const torch::Tensor logits = margin.forward(cosines, local, gathered.detach().norm(2, 1));
  out.loss = distributed_cross_entropy(logits, local, label_smoothing, c);
  out.local_labels = local;
  return out;
}

}  // namespace arcforge::train::dist
