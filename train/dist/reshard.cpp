#include "train/dist/reshard.hpp"

#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"
#include "train/dist/partial_fc.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/optimizer.hpp"
#include "train/train/trainer.hpp"

namespace arcforge::train::dist {
namespace {

// Every rank's file at the newest step all `world` ranks hold, each its current checkpoint or the
// previous one a save keeps. A run killed while saving can leave some ranks a save ahead (as on
// resume); resharding files of different steps would splice two states of training into one.
std::vector<std::string> rank_files_at_common_step(const std::string& checkpoint, int world) {
  std::vector<std::map<int64_t, std::string>> held(world);  // per rank: step -> file
  auto hold = [&](int r, const std::string& file) {
    if (std::filesystem::exists(file)) held[r].emplace(read_checkpoint_step(file), file);
  };
  // Each step read loads a whole file: the previous files are read only when the current ones
  // are not all there at one step.
  std::set<int64_t> current_steps;
  for (int r = 0; r < world; ++r) {
    hold(r, checkpoint_path_for_rank(checkpoint, r));
    current_steps.insert(held[r].empty() ? -1 : held[r].begin()->first);
  }
  if (current_steps.size() == 1 && *current_steps.begin() >= 0) {
    std::vector<std::string> files;
    for (int r = 0; r < world; ++r) files.push_back(held[r].begin()->second);
    return files;
  }
  for (int r = 0; r < world; ++r) {
    hold(r, checkpoint_path_for_rank(previous_checkpoint_path(checkpoint), r));
    if (held[r].empty())
      throw InputError(file_message(checkpoint_path_for_rank(checkpoint, r),
                                    "rank " + std::to_string(r) + " of " + std::to_string(world) +
                                        " is missing (every rank's file must sit beside rank 0's)"));
  }
  for (auto step = held[0].rbegin(); step != held[0].rend(); ++step) {
    std::vector<std::string> files;
    for (int r = 0; r < world && held[r].count(step->first); ++r) files.push_back(held[r].at(step->first));
    if (static_cast<int>(files.size()) < world) continue;
    log::warn(log::cat("reshard: the ranks' latest files are of different steps (the run stopped while saving); "
                       "using step ", step->first, ", which every rank holds"));
    return files;
  }
  std::ostringstream steps;
  for (int r = 0; r < world; ++r) {
    steps << (r ? "; rank " : "rank ") << r << ":";
    for (const auto& [step, file] : held[r]) steps << " " << step;
  }
  throw InputError(file_message(checkpoint, "the ranks' files share no step (" + steps.str() + "); they are not from one run"));
}

using torch::optim::AdamWParamState;
using torch::optim::OptimizerParamState;
using torch::optim::SGDParamState;

// The row-indexed tensors of a head parameter's optimizer state, in a fixed order.
std::vector<torch::Tensor> state_rows(const OptimizerParamState& state) {
  if (const auto* sgd = dynamic_cast<const SGDParamState*>(&state)) return {sgd->momentum_buffer()};
  if (const auto* adamw = dynamic_cast<const AdamWParamState*>(&state))
    return {adamw->exp_avg(), adamw->exp_avg_sq(), adamw->max_exp_avg_sq()};
  throw Error("reshard: unsupported optimizer state");
}

// A copy of `like` whose row tensors are `rows` (the same order as state_rows).
std::unique_ptr<OptimizerParamState> with_rows(const OptimizerParamState& like,
                                               const std::vector<torch::Tensor>& rows) {
  if (dynamic_cast<const SGDParamState*>(&like)) {
    auto state = std::make_unique<SGDParamState>();
    state->momentum_buffer(rows[0]);
    return state;
  }
  const auto& adamw = dynamic_cast<const AdamWParamState&>(like);
  auto state = std::make_unique<AdamWParamState>();
  state->step(adamw.step());
  state->exp_avg(rows[0]);
  state->exp_avg_sq(rows[1]);
  state->max_exp_avg_sq(rows[2]);
  return state;
}

torch::Tensor cut(const torch::Tensor& full, const ClassShard& shard) {
  return full.defined() ? full.narrow(0, shard.start, shard.count).clone() : torch::Tensor();
}

}  // namespace

std::vector<std::string> reshard_checkpoint(const std::string& checkpoint, int new_world_size,
                                            const std::string& out_dir) {
  if (new_world_size < 1) throw ConfigError("reshard: the new world size must be at least 1");
  const std::string rank0 = existing_checkpoint(checkpoint);
  TrainConfig config = read_checkpoint_config(rank0);
  const int old_world = read_checkpoint_shard(rank0).world_size;
  const std::vector<std::string> files = rank_files_at_common_step(checkpoint, old_world);

  // Read every rank: rank 0 gives the shared parts, each rank its rows of the head.
  TrainModules base;
  std::unique_ptr<torch::optim::Optimizer> base_optimizer;
  TrainCounters counters;
  torch::Tensor rng;
  std::vector<torch::Tensor> head_rows;
  std::vector<std::vector<torch::Tensor>> head_state_rows;  // per rank
  std::unique_ptr<OptimizerParamState> head_state_template;
  for (int r = 0; r < old_world; ++r) {
    const std::string& file = files[r];
    const HeadShard shard = read_checkpoint_shard(file);
    if (shard.world_size != old_world || shard.rank != r || read_checkpoint_config(file).data.num_identities !=
                                                                   config.data.num_identities)
      throw InputError(file_message(file, "is not rank " + std::to_string(r) + " of the run of " + checkpoint));
    TrainModules m = make_modules(config, shard);
    auto optimizer = make_optimizer(config.optimizer, m);
    TrainCounters c;
    load_checkpoint(file, m, optimizer.get(), &c, /*restore_rng=*/r == 0);
    if (r == 0) rng = at::detail::getDefaultCPUGenerator().get_state();
    head_rows.push_back(m.head->weight.detach());
    if (const OptimizerParamState* state = optimizer_state(*optimizer, m.head->weight)) {
      head_state_rows.push_back(state_rows(*state));
      if (!head_state_template) head_state_template = state->clone();
    }
    if (r == 0) {
      base = m;
      base_optimizer = std::move(optimizer);
      counters = c;
    }
  }
  const torch::Tensor centres = torch::cat(head_rows, 0);
  std::vector<torch::Tensor> centre_state;  // concatenated per state field (undefined fields stay so)
  if (head_state_rows.size() == static_cast<size_t>(old_world))
    for (size_t f = 0; f < head_state_rows[0].size(); ++f) {
      std::vector<torch::Tensor> parts;
      for (const auto& rank_rows : head_state_rows) parts.push_back(rank_rows[f]);
      centre_state.push_back(parts[0].defined() ? torch::cat(parts, 0) : torch::Tensor());
    }

  config.checkpoint.dir = out_dir;
  std::filesystem::create_directories(out_dir);
  std::vector<std::string> written;
  const std::string target = latest_checkpoint_path(out_dir);
  for (int q = 0; q < new_world_size; ++q) {
    const ClassShard cls = class_shard(config.data.num_identities, q, new_world_size);
    const HeadShard shard{q, new_world_size, cls.start, cls.count};
    TrainModules m = make_modules(config, shard);
    {
      torch::NoGradGuard no_grad;
      auto to = m.backbone->parameters(), from = base.backbone->parameters();
      for (size_t k = 0; k < to.size(); ++k) to[k].copy_(from[k]);
      auto to_b = m.backbone->buffers(), from_b = base.backbone->buffers();
      for (size_t k = 0; k < to_b.size(); ++k) to_b[k].copy_(from_b[k]);
      auto to_m = m.margin->buffers(), from_m = base.margin->buffers();
      for (size_t k = 0; k < to_m.size(); ++k) to_m[k].copy_(from_m[k]);
      m.head->weight.copy_(cut(centres, cls));
    }
    auto optimizer = make_optimizer(config.optimizer, m);
    const auto to = m.backbone->parameters(), from = base.backbone->parameters();
    for (size_t k = 0; k < to.size(); ++k)
      if (const OptimizerParamState* state = optimizer_state(*base_optimizer, from[k]))
        set_optimizer_state(*optimizer, to[k], state->clone());
    if (!centre_state.empty()) {
      std::vector<torch::Tensor> rows;
      for (const auto& full : centre_state) rows.push_back(cut(full, cls));
      set_optimizer_state(*optimizer, m.head->weight, with_rows(*head_state_template, rows));
    }
    at::Generator cpu = at::detail::getDefaultCPUGenerator();  // a handle to the global one
    cpu.set_state(rng);
    const std::string path = checkpoint_path_for_rank(target, q);
    save_checkpoint(path, config, m, optimizer.get(), counters, shard);
    written.push_back(path);
  }
  return written;
}

}  // namespace arcforge::train::dist
