#include "train/train/step_ops.hpp"

#include "train/compat/torch_compat.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <type_traits>

namespace arcforge::train {

std::vector<torch::Tensor> defined_grads(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  grads.reserve(params.size());
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  return grads;
}

void clear_grads(const std::vector<torch::Tensor>& params) {
  for (const auto& p : params)
    if (p.grad().defined()) const_cast<torch::Tensor&>(p).mutable_grad().reset();
}

void scale_grads(const std::vector<torch::Tensor>& params, double factor) {
  torch::NoGradGuard no_grad;
  auto grads = defined_grads(params);
  if (!grads.empty()) at::_foreach_mul_(grads, factor);
}

GradientCheck clip_and_check(const std::vector<torch::Tensor>& clipped,
                             const std::vector<torch::Tensor>& others, double max_norm) {
  torch::NoGradGuard no_grad;
  auto clipped_grads = defined_grads(clipped);
  auto other_grads = defined_grads(others);
  auto total_norm = [](const std::vector<torch::Tensor>& grads) {
    if (grads.empty()) return torch::zeros({});
    // Per-tensor norms in one multi-tensor kernel, then the norm of the norms (in fp32).
    auto norms = at::_foreach_norm(grads, 2);
    for (auto& n : norms) n = n.to(torch::kFloat);
    return torch::stack(norms).norm(2);
  };
  GradientCheck check;
  check.clip_norm = total_norm(clipped_grads);
  torch::Tensor others_norm = total_norm(other_grads).to(check.clip_norm.device());
  // A NaN or inf anywhere makes its tensor's norm, and so the sum, non-finite.
  check.all_finite = torch::isfinite(check.clip_norm + others_norm);
  if (max_norm > 0 && !clipped_grads.empty()) {
    // min(max_norm / (norm + 1e-6), 1): multiplying by exactly 1 leaves small gradients unchanged,
    // as the branch in clip_grad_norm_ does, without reading the norm back.
    torch::Tensor coefficient = (max_norm / (check.clip_norm + 1e-6)).clamp_max(1.0);
    for (auto& g : clipped_grads) g.mul_(coefficient.to(g.scalar_type()));
  }
  return check;
}

namespace {

// The group's parameters that have a gradient, and those gradients, in order.
void params_with_grads(torch::optim::OptimizerParamGroup& group, std::vector<torch::Tensor>& params,
                       std::vector<torch::Tensor>& grads) {
  for (auto& p : group.params())
    if (p.grad().defined()) {
      params.push_back(p);
      grads.push_back(p.grad());
    }
}

// d_p = grad + weight_decay * p (a new list: the gradients themselves stay as they are).
std::vector<torch::Tensor> decayed_gradients(const torch::optim::SGDOptions& options,
                                             const std::vector<torch::Tensor>& grads,
                                             const std::vector<torch::Tensor>& params) {
  return options.weight_decay() != 0 ? at::_foreach_add(grads, params, options.weight_decay()) : grads;
}

}  // namespace

void foreach_sgd_step(torch::optim::SGD& optimizer) {
  torch::NoGradGuard no_grad;
  auto& state = optimizer.state();
  using StateMap = std::remove_reference_t<decltype(state)>;
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::SGDOptions&>(group.options());
    std::vector<torch::Tensor> params, grads;
    params_with_grads(group, params, grads);
    if (params.empty()) continue;
    std::vector<torch::Tensor> steps = decayed_gradients(options, grads, params);
    if (options.momentum() != 0) {
      std::vector<torch::Tensor> buffers;
      bool all_present = true;
      for (size_t i = 0; i < params.size(); ++i) {
        auto found = state.find(compat::optimizer_state_key<StateMap>(params[i]));
        if (found == state.end()) {
          all_present = false;
          break;
        }
        buffers.push_back(static_cast<torch::optim::SGDParamState&>(*found->second).momentum_buffer());
      }
      if (!all_present) {
        // First step: the buffer starts as a copy of d_p (torch::optim::SGD's rule).
        buffers.clear();
        for (size_t i = 0; i < params.size(); ++i) {
          auto key = compat::optimizer_state_key<StateMap>(params[i]);
          auto found = state.find(key);
          torch::Tensor buffer;
          if (found == state.end()) {
            buffer = torch::clone(steps[i]).detach();
            auto fresh = std::make_unique<torch::optim::SGDParamState>();
            fresh->momentum_buffer(buffer);
            state[key] = std::move(fresh);
          } else {
            buffer = static_cast<torch::optim::SGDParamState&>(*found->second).momentum_buffer();
            buffer.mul_(options.momentum()).add_(steps[i], 1 - options.dampening());
          }
          buffers.push_back(buffer);
        }
      } else {
        at::_foreach_mul_(buffers, options.momentum());
        at::_foreach_add_(buffers, steps, 1 - options.dampening());
      }
      steps = options.nesterov() ? at::_foreach_add(steps, buffers, options.momentum()) : buffers;
    }
    at::_foreach_add_(params, steps, -1 * options.lr());
  }
}

bool sgd_state_ready(torch::optim::SGD& optimizer) {
  auto& state = optimizer.state();
  using StateMap = std::remove_reference_t<decltype(state)>;
  for (auto& group : optimizer.param_groups()) {
    if (static_cast<const torch::optim::SGDOptions&>(group.options()).momentum() == 0) continue;
    for (auto& p : group.params())
      if (p.grad().defined() && state.find(compat::optimizer_state_key<StateMap>(p)) == state.end()) return false;
  }
  return true;
}

void masked_sgd_step(torch::optim::SGD& optimizer, const torch::Tensor& apply) {
  torch::NoGradGuard no_grad;
  auto& state = optimizer.state();
  using StateMap = std::remove_reference_t<decltype(state)>;
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::SGDOptions&>(group.options());
    std::vector<torch::Tensor> params, grads, buffers;
    params_with_grads(group, params, grads);
    if (params.empty()) continue;
    // foreach_sgd_step's arithmetic, out of place: the old values stay for the choice below.
    std::vector<torch::Tensor> steps = decayed_gradients(options, grads, params);
    if (options.momentum() != 0) {
      for (auto& p : params) {
        auto found = state.find(compat::optimizer_state_key<StateMap>(p));
        if (found == state.end()) throw std::logic_error("masked_sgd_step before the momentum buffers exist");
        buffers.push_back(static_cast<torch::optim::SGDParamState&>(*found->second).momentum_buffer());
      }
      std::vector<torch::Tensor> updated = at::_foreach_mul(buffers, options.momentum());
      at::_foreach_add_(updated, steps, 1 - options.dampening());
      for (size_t i = 0; i < buffers.size(); ++i) at::where_out(buffers[i], apply, updated[i], buffers[i]);
      steps = options.nesterov() ? at::_foreach_add(steps, updated, options.momentum()) : updated;
    }
    const std::vector<torch::Tensor> moved = at::_foreach_add(params, steps, -1 * options.lr());
    for (size_t i = 0; i < params.size(); ++i) at::where_out(params[i], apply, moved[i], params[i]);
  }
}

}  // namespace arcforge::train

namespace arcforge::train {

TensorSnapshot::TensorSnapshot(std::vector<torch::Tensor> tensors) {
  for (auto& t : tensors) {
    auto same_dtype = [&](const Group& g) { return g.tensors.front().scalar_type() == t.scalar_type(); };
    auto it = std::find_if(groups_.begin(), groups_.end(), same_dtype);
    if (it == groups_.end()) it = groups_.insert(groups_.end(), Group{});
    it->tensors.push_back(t);
  }
}

void TensorSnapshot::take() {
  torch::NoGradGuard no_grad;
  for (auto& g : groups_) {
    std::vector<torch::Tensor> flat;
    flat.reserve(g.tensors.size());
    for (auto& t : g.tensors) flat.push_back(t.detach().reshape({-1}));
    g.copy = torch::cat(flat);
  }
}

void TensorSnapshot::restore_unless(const torch::Tensor& keep) {
  torch::NoGradGuard no_grad;
  for (auto& g : groups_) {
    int64_t offset = 0;
    for (auto& t : g.tensors) {
      at::where_out(t, keep, t, g.copy.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

void TensorSnapshot::restore() {
  torch::NoGradGuard no_grad;
  for (auto& g : groups_) {
    int64_t offset = 0;
    for (auto& t : g.tensors) {
      t.copy_(g.copy.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

}  // namespace arcforge::train
