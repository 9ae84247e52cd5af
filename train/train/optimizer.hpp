#pragma once
// The optimizer of a run, and access to its per-parameter state (momentum, Adam moments), which
// resharding moves between parameters of different processes.
#include <torch/torch.h>

#include <memory>

#include "train/train/checkpoint.hpp"
#include "train/train/config.hpp"

namespace arcforge::train {

// SGD or AdamW over two groups, backbone then head, so clipping and inspection can tell them apart.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& config, TrainModules& modules);

// p's state in `optimizer`, or nullptr before its first step.
torch::optim::OptimizerParamState* optimizer_state(torch::optim::Optimizer& optimizer, const torch::Tensor& p);
void set_optimizer_state(torch::optim::Optimizer& optimizer, const torch::Tensor& p,
                         std::unique_ptr<torch::optim::OptimizerParamState> state);

}  // namespace arcforge::train
