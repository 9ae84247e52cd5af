#pragma once
// One file per save holding everything a bit-identical resume needs: backbone, head, margin
// buffers, optimizer state, step, counters, loss scale, every RNG state, and the config (TOML text).
// Written atomically (temp file, fsync, rename): a crash leaves the previous checkpoint intact.
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "train/nn/backbone.hpp"
#include "train/nn/margin.hpp"
#include "train/train/config.hpp"

namespace arcforge::train {

struct TrainCounters {
  int64_t step = 0;                   // optimizer steps completed
  int64_t nonfinite_total = 0;        // steps skipped for a non-finite loss or gradient
  int64_t nonfinite_consecutive = 0;  // current run of skipped steps
  double loss_scale = 65536.0;        // fp16 dynamic loss scale
  int64_t scale_growth_tracker = 0;   // finite steps since the scale last changed
};

// Which rows of the class-centre matrix this process holds (Partial FC shards them by rank).
// The default, count 0, is the whole matrix of a single-process run.
struct HeadShard {
  int rank = 0;
  int world_size = 1;
  int64_t start = 0;
  int64_t count = 0;
};

struct TrainModules {
  std::shared_ptr<nn::Backbone> backbone;
  nn::NormalizedLinear head{nullptr};
  nn::Margin margin{nullptr};
};

// Builds backbone, head and margin for a config (weights initialised from train.seed). A shard's
// head rows are those of the single-process initialisation whatever the world size, so runs with
// different world sizes start identically: up to 2^26 values the matrix is drawn whole and cut;
// larger ones are drawn in blocks of 65536 classes, each from its own seeded generator.
TrainModules make_modules(const TrainConfig& config, const HeadShard& shard = {});

// The file each rank of a run writes: rank 0 `path`, rank r `<path without .pt>.rank<r>.pt`.
std::string checkpoint_path_for_rank(const std::string& path, int rank);

// Where the trainer keeps the checkpoint a save replaced: `X.pt` -> `X.prev.pt`, a rank file
// `X.rank<r>.pt` -> `X.prev.rank<r>.pt` (= checkpoint_path_for_rank of `X.prev.pt`). See
// save_checkpoint_keeping_previous.
std::string previous_checkpoint_path(const std::string& path);

// `path` when it exists, else its previous checkpoint when that exists, else `path` (whose read
// then fails naming it): a run killed between the two renames of a save has only the previous.
std::string existing_checkpoint(const std::string& path);

// The optimizer steps a checkpoint was saved after.
int64_t read_checkpoint_step(const std::string& path);

// The shard a checkpoint holds (the whole matrix for single-process checkpoints).
HeadShard read_checkpoint_shard(const std::string& path);

void save_checkpoint(const std::string& path, const TrainConfig& config, TrainModules& modules,
                     torch::optim::Optimizer* optimizer, const TrainCounters& counters,
                     const HeadShard& shard = {});

// save_checkpoint to `path`, keeping the checkpoint it replaces: the new file is written completely
// beside it, then the old one is renamed to previous_checkpoint_path(path), then the new one to
// `path`. Killed at any moment, each rank is left with a complete checkpoint of this save or of
// the one before under one of the two names, so the ranks of a multi-process run always share a
// step to resume from (the trainer picks the newest they all have).
void save_checkpoint_keeping_previous(const std::string& path, const TrainConfig& config, TrainModules& modules,
                                      torch::optim::Optimizer* optimizer, const TrainCounters& counters,
                                      const HeadShard& shard = {});

// Reads just the config stored in a checkpoint (to rebuild the modules before loading).
TrainConfig read_checkpoint_config(const std::string& path);

// Loads weights (and, when given, optimizer state, counters and RNG states) into existing modules
// built from the checkpoint's own config. Throws InputError naming the file on any mismatch.
void load_checkpoint(const std::string& path, TrainModules& modules,
                     torch::optim::Optimizer* optimizer = nullptr,
                     TrainCounters* counters = nullptr, bool restore_rng = false);

// Convenience for eval/export: rebuilds the modules from the checkpoint and loads the weights.
TrainModules load_modules_from_checkpoint(const std::string& path, TrainConfig* config_out = nullptr);

}  // namespace arcforge::train
