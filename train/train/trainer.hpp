#pragma once
// The training loop, readable top to bottom in trainer.cpp.
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/eval/verification.hpp"
#include "train/train/config.hpp"
#include "train/train/phase_timer.hpp"

namespace arcforge::train {

// The run stopped on purpose (e.g. too many non-finite steps); the last checkpoint is usable.
class TrainingStopped : public Error {
 public:
  using Error::Error;
};

struct TrainHooks {
  // Called with each micro-batch loss before backward; tests use it to inject NaN/inf.
  std::function<void(int64_t step, torch::Tensor& loss)> on_loss;
  // Called after each completed optimizer step (or skipped step); return false to stop early.
  std::function<bool(int64_t step)> after_step;
};

struct TrainResult {
  int64_t steps = 0;            // optimizer steps completed in total (including before a resume)
  int64_t steps_this_run = 0;
  double images_per_s = 0;      // training throughput of this run (excluding evaluation)
  double final_loss = 0;        // mean loss over the last logging window
  int64_t skipped_steps = 0;    // non-finite steps skipped in total
  std::string checkpoint;       // path of the last checkpoint written
  std::string metrics;          // JSONL path
  std::string device;
  std::string precision;        // as resolved (train.precision "auto" becomes bf16 or fp32)
  double peak_device_memory_mb = 0;  // CUDA peak allocated memory (0 on CPU)
  double peak_host_memory_mb = 0;    // the process's peak resident memory so far (getrusage)
  std::optional<eval::VerificationReport> eval_before;  // untrained (only on a fresh run)
  std::optional<eval::VerificationReport> eval_after;
  std::vector<std::pair<std::string, eval::VerificationReport>> eval_sets_after;  // eval.sets, by name
  std::vector<PhaseTime> phases;  // log.phase_timing: mean time per step phase (empty otherwise)
  int64_t sync_checked_steps = 0;  // log.sync_check on CUDA: steps run with host syncs forbidden
};

// Trains as configured: one process, or one rank of a multi-process run when the launcher's
// environment says so (train/dist/dist_env.hpp); every rank calls this with the same config.
// With resume_from, continues from that checkpoint (its config must match
// in everything but the step count and logging/checkpoint cadence).
TrainResult run_training(const TrainConfig& config, const std::string& resume_from = "",
                         const TrainHooks& hooks = {});

// Resolves "auto" to CUDA when available; errors clearly when CUDA is asked for and absent. A
// process of a multi-process run takes the GPU of its local rank.
torch::Device resolve_device(const std::string& name, int local_rank = 0);

// What a device computes natively, as train.precision "auto" needs to know it.
struct PrecisionSupport {
  bool cuda = false;       // the run is on a GPU
  bool cuda_bf16 = false;  // that GPU has bf16 tensor cores (compute capability 8.0+: A100, H100...)
  bool cpu_bf16 = false;   // the CPU has AVX512-BF16 (every CPU with AMX has it)
  bool cpu_avx512 = false; // the CPU has AVX-512: oneDNN 2.x's jit bf16 kernels need it
  bool cpu_bf16_fast = false;  // and bf16 outpaces fp32 there: AMX, or AMD's AVX512-BF16 (cpu/bf16_speed.hpp)
};
PrecisionSupport precision_support(const torch::Device& device);

// What to tell a user who asked for a precision the device cannot compute well (empty when it
// can): bf16 on a CPU without AVX-512, where oneDNN has no bf16 kernels and the dense layers
// compute in fp32 instead (nn::bf16_layer_computes_in_fp32), on an AVX-512 CPU where bf16 is slower
// than fp32 (Intel without AMX), or on a GPU without bf16 tensor cores.
std::string precision_warning(const std::string& precision, const PrecisionSupport& support);

// train.precision as the run uses it. "auto" is bf16 where the device computes it faster than fp32
// (a GPU of compute capability 8.0 or newer; a CPU with AMX, or AMD's AVX512-BF16); fp16 with loss
// scaling on older GPUs (V100, T4: fp16 tensor cores, bf16 emulated), which is arcface_torch's
// default; fp32 on other CPUs, where bf16 would be no faster than fp32 (see precision_warning). The
// other names stay as they are.
std::string resolve_precision(const std::string& name, const PrecisionSupport& support);
std::string resolve_precision(const std::string& name, const torch::Device& device);

// The checkpoint path the trainer writes (and --resume latest reads).
std::string latest_checkpoint_path(const std::string& dir);

}  // namespace arcforge::train
