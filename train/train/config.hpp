#pragma once
// The training configuration: plain data, read from a TOML preset (configs/*.toml) with any key
// overridable on the command line as `section.key=value`. Unknown keys are errors, not ignored.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "train/data/augment.hpp"
#include "train/nn/backbone.hpp"
#include "train/nn/margin.hpp"

namespace arcforge::train {

struct DataConfig {
  std::string dataset = "synth";      // synth | synthetic | rec | folder
  std::string path;                   // rec: train.rec or its folder; folder: root/<identity>/<image>
  int64_t num_identities = 1000;      // synth: training identities
  int64_t samples_per_identity = 0;   // synth: 0 = every draw is a new sample; S > 0 = a finite
                                      //   dataset of num_identities x S images, iterated in epochs
                                      //   exactly as the loader iterates a .rec (see SynthBatches)
  bool synth_uint8 = false;           // synth: round renders to 8-bit levels, as a stored image holds
  int64_t num_images = 0;             // for epoch-based step counts (InsightFace presets)
  uint64_t seed = 0;                  // dataset seed (which identities exist)
  int loader_threads = 4;             // rec/folder: decoding threads
  int64_t prefetch_batches = 4;       // rec/folder: batches decoded ahead
  bool skip_bad = false;              // rec/folder: replace and count undecodable images instead of stopping
  // Make batch k+1 (render, augment) on a worker thread during step k: "auto" (on CUDA only: the
  // host issues its ops while the GPU runs the step; on the CPU the step's threads already use
  // every core), "on" or "off". The batches are the same either way.
  std::string make_ahead = "auto";
};

// Train-time augmentation (train/data/augment.hpp): a preset, then single options over it.
// "auto" = "flip" (arcface_torch's default) for rec/folder, "none" for synth (its renderer already
// varies pose, light and occlusion) and synthetic.
struct AugmentConfig {
  std::string preset = "auto";
  std::map<std::string, std::string> options;  // key -> value text, e.g. rotate_p -> "0.5"
};

struct OptimizerConfig {
  std::string name = "sgd";  // sgd | adamw
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adamw
};

struct ScheduleConfig {
  std::string name = "poly";  // poly | cosine | cosine_restarts | constant
  int64_t warmup_steps = 0;
  double power = 2.0;         // poly
  double min_lr = 0.0;        // cosine floor
  int64_t restart_period = 0; // cosine_restarts: first period T_0 in steps (0 = steps/4)
  double restart_mult = 2.0;  // cosine_restarts: T_mult
};

struct TrainLoopConfig {
  int64_t batch_size = 64;
  int64_t steps = 1000;            // 0 = derive from epochs and data.num_images
  double epochs = 0;
  int64_t grad_accumulation = 1;
  double clip_grad_norm = 5.0;     // on the backbone; 0 = off
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (fp16 only on CUDA) | auto (resolve_precision)
  std::string device = "auto";     // auto | cpu | cuda
  int threads = 0;                 // 0 = all cores
  uint64_t seed = 0;               // weights, sampling
  int64_t max_nonfinite_steps = 5; // consecutive skipped steps before the run stops
  double label_smoothing = 0.0;
  bool channels_last = true;       // NHWC activations: ~2x faster conv backward on CPU (oneDNN)
  // CUDA, one process: replay each step's forward, backward and clipping as one CUDA graph after
  // two eager warm-up steps (train/train/graphed_step.hpp).
  bool cuda_graph = false;
  // auto | on | off. On: the non-finite guard decides on the device whether each step's update
  // applies, and the host reads its tally only when it reports (no host-device sync per step);
  // SGD only. Auto: on for CUDA with SGD (train/train/step_tally.hpp).
  std::string deferred_verdict = "auto";
};

// Multi-process training (train/dist/): the world comes from the launcher's environment
// (RANK, WORLD_SIZE, ...; `arcforge train --nproc N`), these are the knobs.
struct DistConfig {
  double sample_rate = 1.0;       // Partial FC: share of each rank's class centres used per step
  std::string backend = "auto";   // auto (NCCL on CUDA where built, else Gloo) | gloo | nccl
  double timeout_s = 1800;        // rendezvous and every collective give up after this
  double bucket_mb = 25;          // gradient all-reduce bucket size
  bool fp16_compress = false;     // all-reduce backbone gradients in fp16
};

struct CheckpointConfig {
  std::string dir = "runs/default";
  int64_t every = 500;  // steps; a checkpoint is also written at the end
};

struct EvalConfig {
  int64_t every = 0;        // steps; 0 = only at the end
  int64_t pairs = 1000;     // held-out synth pairs; 0 = no evaluation
  int64_t identities = 200; // held-out synth identities they are drawn from
  uint64_t seed = 12345;
  int64_t batch_size = 64;
  std::vector<std::string> sets;  // real verification sets: .bin files or pair lists (.csv, pairs.txt)
  std::string set_root;           // image root for pair lists (empty: each list's folder)
};

struct LogConfig {
  int64_t every = 10;     // plain progress line period (non-TTY)
  std::string metrics;    // JSONL path; empty = <checkpoint.dir>/metrics.jsonl
  bool phase_timing = false;  // time each phase of a step, synchronising the device (train/phase_timer.hpp)
  // CUDA: from the second step on, any host-device synchronisation inside a step other than the
  // finiteness verdict fails the run, naming the call (PyTorch's sync debug mode). No-op on CPU.
  bool sync_check = false;
  // A Chrome trace of profile_steps steps after the warm-up, every libtorch operator
  // (train/train/step_trace.hpp); empty = none. The leader's steps alone in a multi-process run.
  std::string profile;
  int64_t profile_steps = 2;
};

struct TrainConfig {
  nn::BackboneOptions model;
  nn::MarginOptions margin;
  std::string margin_preset = "arcface";
  DataConfig data;
  AugmentConfig augment;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  TrainLoopConfig train;
  DistConfig dist;
  CheckpointConfig checkpoint;
  EvalConfig eval;
  LogConfig log;

  // Optimizer steps of the run: train.steps, or (when 0) train.epochs over data.num_images with
  // `world_size` processes each taking batch_size x grad_accumulation images per step.
  int64_t total_steps(int world_size = 1) const;
};

// Reads a TOML file (may be empty) and applies overrides "section.key=value" (value in TOML syntax;
// bare words are taken as strings). Throws ConfigError naming the file/key on any problem.
TrainConfig load_config(const std::string& toml_path, const std::vector<std::string>& overrides);
TrainConfig parse_config(const std::string& toml_text, const std::vector<std::string>& overrides,
                         const std::string& source_name = "<config>");

// The configuration as TOML text (stored in checkpoints; parse_config reads it back exactly).
std::string to_toml(const TrainConfig& config);

// The augmentation the configuration asks for: its preset ("auto" resolved by dataset), then options.
data::AugmentOptions resolved_augment(const TrainConfig& c);

}  // namespace arcforge::train
