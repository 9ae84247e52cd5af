#include "train/train/optimizer.hpp"

#include "train/compat/torch_compat.hpp"

namespace arcforge::train {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& c, TrainModules& m) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (c.name == "sgd") {
    auto options = [&] {
      return std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(c.lr).momentum(c.momentum).weight_decay(c.weight_decay));
    };
    groups.emplace_back(m.backbone->parameters(), options());
    groups.emplace_back(m.head->parameters(), options());
    return std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(c.lr));
  }
  auto options = [&] {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(c.lr)
                                                            .betas({c.beta1, c.beta2})
                                                            .eps(c.eps)
                                                            .weight_decay(c.weight_decay));
  };
  groups.emplace_back(m.backbone->parameters(), options());
  groups.emplace_back(m.head->parameters(), options());
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(c.lr));
}

torch::optim::OptimizerParamState* optimizer_state(torch::optim::Optimizer& optimizer, const torch::Tensor& p) {
  auto& state = optimizer.state();
  auto found = state.find(compat::optimizer_state_key<std::decay_t<decltype(state)>>(p));
  return found == state.end() ? nullptr : found->second.get();
}

void set_optimizer_state(torch::optim::Optimizer& optimizer, const torch::Tensor& p,
                         std::unique_ptr<torch::optim::OptimizerParamState> value) {
  auto& state = optimizer.state();
  state[compat::optimizer_state_key<std::decay_t<decltype(state)>>(p)] = std::move(value);
}

}  // namespace arcforge::train
