#include "train/train/trainer.hpp"

#include <ATen/detail/CUDAHooksInterface.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include "arcforge/common/log.hpp"
#include "arcforge/common/progress.hpp"
#include "arcforge/cpu/bf16_speed.hpp"
#include "arcforge/eval/report_json.hpp"
#include "train/compat/torch_compat.hpp"
#include "train/dist/collectives.hpp"
#include "train/dist/grad_reducer.hpp"
#include "train/dist/partial_fc.hpp"
#include "train/nn/cpu_kernel_isa.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/embed.hpp"
#include "train/train/eval_sets.hpp"
#include "train/train/grad_scaler.hpp"
#include "train/train/graphed_step.hpp"
#include "train/train/lr_schedule.hpp"
#include "train/train/metrics_log.hpp"
#include "train/train/optimizer.hpp"
#include "train/train/batch_source.hpp"
#include "train/train/prefetched_batches.hpp"
#include "train/train/step_ops.hpp"
#include "train/train/step_tally.hpp"
#include "train/train/step_trace.hpp"

namespace arcforge::train {
namespace {

using Clock = std::chrono::steady_clock;

// Stores every 4-D weight NHWC; with NHWC inputs oneDNN/cuDNN then keep activations NHWC too.
void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

// Everything that defines the trajectory must match between a checkpoint and a resumed run;
// only the thread count, how steps are issued (CUDA graphs, deferred verdicts) and the
// logging/checkpoint/eval cadence may change.
std::string trajectory_fingerprint(TrainConfig c) {
  c.train.threads = 0;
  c.train.cuda_graph = false;  // the same kernels, replayed
  c.train.deferred_verdict = "auto";  // the same steps applied or skipped
  c.dist.timeout_s = 0;
  c.dist.backend.clear();
  c.dist.bucket_mb = 0;
  c.train.max_nonfinite_steps = 0;
  c.data.make_ahead = "auto";  // the batches are the same either way
  c.checkpoint = CheckpointConfig{};
  c.eval = EvalConfig{};
  c.log = LogConfig{};
  return to_toml(c);
}

// log.sync_check: PyTorch's CUDA sync debug mode, armed over the parts of a step that must not
// make the host wait for the device, and never left armed on the way out (an error included).
class HostSyncCheck {
 public:
  explicit HostSyncCheck(bool enabled) : enabled_(enabled) {}
  ~HostSyncCheck() { disarm(); }
  HostSyncCheck(const HostSyncCheck&) = delete;
  HostSyncCheck& operator=(const HostSyncCheck&) = delete;
  void arm() {
    if (!enabled_ || armed_) return;
    compat::set_cuda_sync_check(true);
    armed_ = true;
  }
  // True when it was armed.
  bool disarm() {
    if (!armed_) return false;
    compat::set_cuda_sync_check(false);
    armed_ = false;
    return true;
  }

 private:
  bool enabled_;
  bool armed_ = false;
};

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

PrecisionSupport precision_support(const torch::Device& device) {
  PrecisionSupport support;
  support.cuda = device.is_cuda();
  // libtorch's own test before it runs a bf16 convolution on cuDNN: compute capability 8.0 or
  // newer on the current device (resolve_device has made it the rank's GPU).
  if (support.cuda) support.cuda_bf16 = at::detail::getCUDAHooks().supportsBFloat16ConvolutionWithCuDNNv8();
  support.cpu_bf16 = nn::cpu_kernel_active_isa() == nn::CpuKernelIsa::avx512_bf16;
  support.cpu_avx512 = nn::cpu_kernel_active_isa() >= nn::CpuKernelIsa::avx512;
  support.cpu_bf16_fast = support.cpu_bf16 && cpu::bf16_outpaces_fp32(cpu::this_cpus_bf16_hardware());
  return support;
}

std::string precision_warning(const std::string& precision, const PrecisionSupport& support) {
  if (precision != "bf16") return "";
  if (support.cuda) {
    if (support.cuda_bf16) return "";
    return "train.precision bf16 on a GPU without bf16 tensor cores (compute capability below 8.0): bf16 is "
           "emulated there; fp16 (what 'auto' picks on this GPU) is the fast mixed precision";
  }
  if (support.cpu_bf16_fast) return "";
  if (support.cpu_avx512) {
    return "train.precision bf16 on a CPU with neither AMX nor AMD's full-rate AVX512-BF16: bf16 is likely "
           "slower than fp32 here (fp32 is what 'auto' picks on this CPU)";
  }
  return "train.precision bf16 on a CPU without AVX-512: oneDNN has no bf16 kernels below AVX-512, so "
         "dense convolutions and Linear layers compute in fp32 and store their outputs in bf16; bf16 saves "
         "memory here, not time (fp32, what 'auto' picks on this CPU, is as fast or faster), and is not "
         "what PyTorch's bf16 autocast computes";
}

std::string resolve_precision(const std::string& name, const PrecisionSupport& support) {
  if (name != "auto") return name;
  if (support.cuda) return support.cuda_bf16 ? "bf16" : "fp16";
  return support.cpu_bf16_fast ? "bf16" : "fp32";
}

std::string resolve_precision(const std::string& name, const torch::Device& device) {
  return name == "auto" ? resolve_precision(name, precision_support(device)) : name;
}

torch::Device resolve_device(const std::string& name, int local_rank) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" && !torch::cuda::is_available())
    throw ConfigError("train.device is 'cuda' but no CUDA device is available");
  if (!torch::cuda::is_available()) return torch::kCPU;
  // One GPU per local rank, as torchrun lays processes out.
  const auto gpus = static_cast<int>(torch::cuda::device_count());
  if (local_rank >= gpus)
    throw ConfigError("LOCAL_RANK " + std::to_string(local_rank) + " has no GPU of its own (" +
                      std::to_string(gpus) + " visible)");
  compat::set_cuda_device(local_rank);
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
}

std::string latest_checkpoint_path(const std::string& dir) {
  return (std::filesystem::path(dir) / "checkpoint.pt").string();
}

namespace {

// The file this rank resumes from: the newest step every rank holds, among each rank's checkpoint
// and the previous one a save keeps (save_checkpoint_keeping_previous). A run killed while saving
// can leave some ranks one save ahead; they go back to their previous file.
std::string choose_resume_file(const std::string& resume_from, dist::Collectives& world, torch::Device device) {
  const int rank = world.rank();
  const std::string current = checkpoint_path_for_rank(resume_from, rank);
  const std::string previous = checkpoint_path_for_rank(previous_checkpoint_path(resume_from), rank);
  const auto step_of = [](const std::string& file) -> int64_t {
    return std::filesystem::exists(file) ? read_checkpoint_step(file) : -1;
  };
  // Each read loads a whole file, so the previous one is read only when it may be needed.
  const int64_t current_step = step_of(current);
  int64_t previous_step = current_step < 0 ? step_of(previous) : -1;
  // A rank without any file still joins the all-reduce (with -1), so that every rank fails with
  // the same clear error instead of the others waiting on a collective for the timeout.
  auto agreed = torch::tensor({static_cast<double>(current_step >= 0 ? current_step : previous_step)},
                              torch::TensorOptions().dtype(torch::kDouble).device(device));
  world.allreduce(agreed, dist::Reduce::min);
  const auto step = static_cast<int64_t>(agreed.cpu().item<double>());
  if (step < 0) {
    if (current_step < 0 && previous_step < 0 && world.world_size() == 1) read_checkpoint_step(current);  // names the file
    throw InputError(file_message(current, current_step < 0 && previous_step < 0
                                               ? "rank " + std::to_string(rank) + " has no checkpoint to resume from"
                                               : "another rank has no checkpoint to resume from (the run stopped "
                                                 "before every rank had saved once)"));
  }
  if (current_step > step) previous_step = step_of(previous);
  const std::string chosen = current_step == step ? current : previous_step == step ? previous : std::string();
  auto everyone_has_it = torch::tensor({chosen.empty() ? 0.0 : 1.0},
                                       torch::TensorOptions().dtype(torch::kDouble).device(device));
  world.allreduce(everyone_has_it, dist::Reduce::min);
  if (everyone_has_it.cpu().item<double>() == 0)
    throw InputError(current + ": the ranks' checkpoints share no step (this rank has " +
                     std::to_string(current_step) + " and " + std::to_string(previous_step) + ", rank minimum " +
                     std::to_string(step) + "); they are not from one run");
  if (chosen != current)
    log::warn(log::cat("rank ", rank, ": resuming from ", chosen, " (step ", step,
                       "): the run stopped while checkpoints were being written"));
  return chosen;
}

}  // namespace

TrainResult run_training(const TrainConfig& requested, const std::string& resume_from,
                         const TrainHooks& hooks) {
  // A real dataset decides the class count (the head's rows) and the epoch length.
  std::shared_ptr<const data::ImageSource> source = open_dataset(requested.data);
  TrainConfig config = requested;
  if (source) {
    log::info(source->summary());
    config.data.num_identities = source->num_classes();
    config.data.num_images = source->size();
  } else if (config.data.dataset == "synth" && config.data.samples_per_identity > 0) {
    config.data.num_images = config.data.num_identities * config.data.samples_per_identity;
  }
  const int threads = config.train.threads > 0
                          ? config.train.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  // ---- the world: one process, or one rank of a c10d process group ------------------------
  const dist::DistEnv env = dist::dist_env_from_process();
  const torch::Device device = resolve_device(config.train.device, env.local_rank);
  const std::shared_ptr<dist::Collectives> world = dist::connect(
      env, config.dist.backend, device.is_cuda(),
      std::chrono::milliseconds(static_cast<int64_t>(config.dist.timeout_s * 1000)));
  const int rank = world->rank();
  const int world_size = world->world_size();
  const bool leader = rank == 0;  // logs, evaluates, prints
  const PrecisionSupport support = precision_support(device);
  config.train.precision = resolve_precision(config.train.precision, support);
  const std::string& precision = config.train.precision;
  if (const std::string why = precision_warning(precision, support); leader && !why.empty()) log::warn(why);
  if (precision == "fp16" && !device.is_cuda())
    throw ConfigError("train.precision fp16 needs CUDA (use bf16 on CPU)");
  const bool autocast = precision != "fp32";
  if (device.is_cuda())
    at::globalContext().setBenchmarkCuDNN(true);  // fixed shapes: let cuDNN pick the fastest kernels
  const auto low_dtype = precision == "fp16" ? at::kHalf : at::kBFloat16;

  // ---- model, head, optimizer, schedule ----------------------------------------------------
  const dist::ClassShard classes = dist::class_shard(config.data.num_identities, rank, world_size);
  const HeadShard head_shard{rank, world_size, classes.start, classes.count};
  // One rank holding every class with every centre used is the plain head; anything else goes
  // through Partial FC (sharded, sampled, distributed softmax).
  const bool partial_fc = world_size > 1 || config.dist.sample_rate < 1.0;
  std::optional<dist::PartialFC> pfc;
  if (partial_fc) pfc.emplace(classes, config.dist.sample_rate, world);
  TrainModules m = make_modules(config, head_shard);
  m.backbone->to(device);
  if (config.train.channels_last) to_channels_last(*m.backbone);
  m.head->to(device);
  m.margin->to(device);
  // After the first allocation: the caching allocator rejects queries before it is initialised.
  if (device.is_cuda()) compat::cuda_reset_peak_memory(device.index());
  auto optimizer = make_optimizer(config.optimizer, m);
  const int64_t total_steps = config.total_steps(world_size);
  if (total_steps <= 0)
    throw ConfigError("train.epochs: " + std::to_string(config.data.num_images) + " images make no step of " +
                      std::to_string(world_size) + " processes x " + std::to_string(config.train.batch_size) +
                      " x " + std::to_string(config.train.grad_accumulation) + " (set train.steps, or a smaller batch)");
  LrSchedule schedule(config.schedule, config.optimizer.lr, total_steps);
  GradScaler scaler(precision == "fp16");
  TrainCounters counters;

  const std::string resume_file =
      resume_from.empty() ? std::string() : choose_resume_file(resume_from, *world, device);
  if (!resume_from.empty()) {
    TrainConfig saved = read_checkpoint_config(resume_file);
    if (trajectory_fingerprint(saved) != trajectory_fingerprint(config))
      throw ConfigError(resume_from +
                        ": the checkpoint was trained with a different configuration; resume "
                        "with the same config (only threads, train.cuda_graph, train.deferred_verdict and the log/checkpoint/eval cadence may change)");
    const HeadShard saved_shard = read_checkpoint_shard(resume_file);
    if (saved_shard.world_size != world_size)
      throw ConfigError(resume_file + ": the checkpoint was written by " +
                        std::to_string(saved_shard.world_size) + " process(es), this run has " +
                        std::to_string(world_size) + " (convert it with `arcforge reshard`)");
    load_checkpoint(resume_file, m, optimizer.get(), &counters, /*restore_rng=*/true);
    scaler.restore(counters.loss_scale, counters.scale_growth_tracker);
    log::info(log::cat("resumed from ", resume_from, " at step ", counters.step));
  }

  // Every rank starts from rank 0's backbone (the seeds already agree; this makes it certain).
  dist::broadcast_all(*world, m.backbone->parameters(), 0);
  dist::broadcast_all(*world, m.backbone->buffers(), 0);
  std::unique_ptr<BatchSource> data = make_batch_source(config, device, source, {rank, world_size});
  if (config.data.make_ahead == "on" || (config.data.make_ahead == "auto" && device.is_cuda()))
    data = std::make_unique<PrefetchedBatches>(std::move(data), device, total_steps * config.train.grad_accumulation);
  // Held-out synth identities for evaluation, whatever the training data.
  const data::SynthFaces eval_faces(data::SynthOptions{config.data.num_identities, config.data.seed, 112});
  const std::string checkpoint_path = latest_checkpoint_path(config.checkpoint.dir);
  const std::string metrics_path = config.log.metrics.empty()
                                       ? (std::filesystem::path(config.checkpoint.dir) / "metrics.jsonl").string()
                                       : config.log.metrics;
  // Only the leader writes metrics: the other ranks' log goes nowhere.
  MetricsLog metrics(leader ? metrics_path : std::string(), /*append=*/!resume_from.empty());

  TrainResult result;
  result.device = device.str();
  result.precision = precision;
  result.metrics = metrics_path;
  // Real verification sets are read once (encoded images stay in memory) and scored at every eval.
  std::vector<EvalSet> eval_sets;
  for (const auto& path : config.eval.sets) eval_sets.push_back(load_eval_set(path, config.eval.set_root));
  auto evaluate_real_sets = [&](const char* when) {
    for (const auto& set : eval_sets) {
      try {
        auto report = evaluate_set(*m.backbone, set, device, precision, config.eval.batch_size);
        metrics.write({{"step", counters.step}, {"eval_set", set.name}, {"eval", eval::to_json(report)}, {"when", when}});
        log::info(log::cat("[", set.name, "] step ", counters.step, ": accuracy ", fixed(report.accuracy, 5),
                           " +- ", fixed(report.accuracy_std, 5), ", VAL@FAR=1e-3 ", fixed(report.val_at_far, 4)));
        if (std::string(when) == "after") result.eval_sets_after.emplace_back(set.name, report);
      } catch (const InputError& e) {
        log::warn(log::cat("[", set.name, "] eval at step ", counters.step, " skipped: ", e.what()));
      }
    }
  };
  auto evaluate = [&](const char* when) -> std::optional<eval::VerificationReport> {
    evaluate_real_sets(when);
    if (config.eval.pairs <= 0) return std::nullopt;
    try {
      auto report = evaluate_synth(*m.backbone, eval_faces, config.eval, device, precision);
      metrics.write({{"step", counters.step}, {"eval", eval::to_json(report)}, {"when", when}});
      log::info(log::cat("eval at step ", counters.step, ": accuracy ", fixed(report.accuracy, 4),
                         " +- ", fixed(report.accuracy_std, 4), ", AUC ", fixed(report.auc, 4)));
      return report;
    } catch (const InputError& e) {
      // Untrained deep IResNets overflow in eval mode (arcface_torch's init): say so, go on.
      log::warn(log::cat("eval at step ", counters.step, " skipped: ", e.what()));
      return std::nullopt;
    }
  };
  const bool eval_enabled = leader && (config.eval.pairs > 0 || !eval_sets.empty());
  if (eval_enabled && resume_from.empty()) result.eval_before = evaluate("before");

  auto save = [&] {
    counters.loss_scale = scaler.current_scale();
    counters.scale_growth_tracker = scaler.growth_tracker();
    save_checkpoint_keeping_previous(checkpoint_path_for_rank(checkpoint_path, rank), config, m, optimizer.get(),
                                     counters, head_shard);
    result.checkpoint = checkpoint_path_for_rank(checkpoint_path, rank);
  };

  const std::vector<torch::Tensor> backbone_params = m.backbone->parameters();
  const std::vector<torch::Tensor> head_params = m.head->parameters();
  const std::vector<torch::Tensor> backbone_buffers = m.backbone->buffers();
  std::vector<torch::Tensor> all_params = backbone_params;
  all_params.insert(all_params.end(), head_params.begin(), head_params.end());
  // BatchNorm running statistics change in the forward pass; a skipped step must not keep them.
  TensorSnapshot bn_statistics(m.backbone->buffers());
  auto* sgd = dynamic_cast<torch::optim::SGD*>(optimizer.get());
  // Backbone gradients are averaged over ranks, overlapped with backward; the head's shard is
  // each rank's own.
  dist::GradientReducer reducer(backbone_params, world, config.dist.bucket_mb, config.dist.fp16_compress);
  std::optional<Progress> progress;  // the leader's alone
  if (leader) progress.emplace("train", total_steps, config.log.every);
  const int64_t images_per_step = config.train.batch_size * config.train.grad_accumulation * world_size;
  double train_seconds = 0;
  int64_t steps_timed = 0;
  // The first steps of a run pay for allocator growth and kernel selection; throughput leaves
  // them out when the run is long enough to have a steady state.
  const int64_t untimed_steps = total_steps - counters.step > 10 ? kWarmUpSteps : 0;
  double window_loss = 0;
  int64_t window_steps = 0;
  const int64_t first_step = counters.step;
  PhaseTimer phases(config.log.phase_timing, device);
  StepTrace trace(leader ? config.log.profile : std::string(),
                  traced_steps(first_step, total_steps, config.log.profile_steps));
  HostSyncCheck sync_check(config.log.sync_check && device.is_cuda());

  // train.cuda_graph: one process, CUDA; the step's device work is then captured once and replayed.
  if (config.train.cuda_graph && !device.is_cuda())
    throw ConfigError("train.cuda_graph needs a CUDA device; this run is on " + device.str());
  if (config.train.cuda_graph && world_size > 1)
    throw ConfigError("train.cuda_graph runs in one process only; this run has " + std::to_string(world_size));
  if (config.train.cuda_graph && hooks.on_loss)
    throw std::logic_error("TrainHooks::on_loss is not called per step under train.cuda_graph");
  GraphedStep graph(config.train.cuda_graph);
  // train.deferred_verdict: the skip decision stays on the device (SGD only; see config.hpp).
  const bool deferred_verdict = sgd != nullptr && (config.train.deferred_verdict == "on" ||
                                                   (config.train.deferred_verdict == "auto" && device.is_cuda()));
  std::optional<StepTally> tally;  // made at the first deferred step
  bool sgd_ready = false;          // momentum buffers exist (then for good): masked steps can run
  // A replayed step, or one whose scale is updated on the device, must see each new loss scale.
  if (graph.enabled() || deferred_verdict) scaler.keep_on_device(device);
  // Phase marks synchronise the device, which a capture forbids: under a graph the device work is one phase.
  auto mark_in_work = [&](const char* phase) {
    if (!graph.enabled()) phases.mark(phase);
  };

  // The device work's outputs, set by each eager step, or once by the capture and then refilled
  // in place by every replay.
  torch::Tensor step_loss;
  torch::Tensor verdict;  // [loss, 1 if every gradient and the loss are finite else 0], double

  auto stop_for_nonfinite_steps = [&] {
    // Skipped steps touched neither weights nor BN statistics: the checkpoint is the last good state.
    save();
    if (progress) progress->finish();
    throw TrainingStopped(log::cat(
        "training stopped at step ", counters.step, ": ", counters.nonfinite_consecutive,
        " consecutive steps had a non-finite loss or gradient (lower the learning rate, or use "
        "fp32/bf16); the last good weights are in ",
        checkpoint_path));
  };

  m.backbone->train();
  m.head->train();
  m.margin->train();
  // ---- the loop: one optimizer step per iteration ------------------------------------------
  while (counters.step < total_steps) {
    phases.start_step();
    const auto t0 = Clock::now();
    const int64_t step = counters.step;
    trace.before_step(step);
    // The first step pays for one-time uploads and kernel selection; every later one is checked.
    // Under train.cuda_graph only the replays are: warm-up and capture synchronise on purpose.
    const bool capturing = graph.captures_at(step - first_step);
    const bool check_syncs = step > first_step && (!graph.enabled() || graph.replaying());
    if (check_syncs) sync_check.arm();
    const double lr = schedule.at(step);
    set_learning_rate(*optimizer, lr);
    // DDP's broadcast_buffers: every rank runs with rank 0's BatchNorm running statistics.
    dist::broadcast_all(*world, backbone_buffers, 0);
    phases.mark("step_setup");

    std::vector<Batch> batches;
    for (int64_t micro = 0; micro < config.train.grad_accumulation; ++micro) {
      Batch batch = data->batch(step * config.train.grad_accumulation + micro, device);
      if (config.train.channels_last)
        batch.images = batch.images.contiguous(at::MemoryFormat::ChannelsLast);
      batches.push_back(std::move(batch));
    }
    const std::vector<Batch>& inputs = graph.stage(std::move(batches));
    if (capturing) data->wait_idle();  // no other thread may queue kernels during the capture
    phases.mark("data");

    // The step's device work, from the BatchNorm snapshot to the verdict: eager, or a CUDA graph
    // (whose outputs, step_loss and verdict, keep the tensors of the capture).
    auto device_work = [&] {
      bn_statistics.take();
      step_loss = torch::zeros({}, torch::TensorOptions().device(device));
      for (int64_t micro = 0; micro < config.train.grad_accumulation; ++micro) {
        const Batch& batch = inputs[static_cast<size_t>(micro)];
        torch::Tensor embeddings;  // [B, E]
        {
          compat::AutocastGuard guard(device.type(), autocast, low_dtype);
          embeddings = m.backbone->forward(batch.images);
        }
        embeddings = embeddings.to(torch::kFloat);
        torch::Tensor loss;
        if (pfc) {
          loss = pfc->forward(m.head->weight, embeddings, batch.labels, *m.margin,
                              config.train.label_smoothing)
                     .loss;
        } else {
          torch::Tensor cosines = m.head->forward(embeddings);  // [B, C] fp32 in [-1, 1]
          torch::Tensor logits =
              m.margin->forward(cosines, batch.labels, embeddings.detach().norm(2, 1));  // [B, C]
          loss = nn::margin_cross_entropy(logits, batch.labels, config.train.label_smoothing);
        }
        loss = loss / static_cast<double>(config.train.grad_accumulation);
        if (hooks.on_loss) hooks.on_loss(step, loss);
        if (micro + 1 == config.train.grad_accumulation) reducer.arm();
        mark_in_work("forward");
        scaler.scale(loss).backward();
        step_loss += loss.detach();
        mark_in_work("backward");
      }
      reducer.finish();
      mark_in_work("gradient_reduce");
      scaler.unscale(all_params);
      // Clipping and the finiteness check stay on the device; the step's one host read follows.
      GradientCheck check = clip_and_check(backbone_params, head_params, config.train.clip_grad_norm);
      verdict = torch::stack({step_loss.to(torch::kDouble),
                              (check.all_finite & torch::isfinite(step_loss)).to(torch::kDouble)});
    };
    graph.run(step - first_step, device_work, all_params);
    if (graph.enabled()) phases.mark("graph_step");
    if (step == first_step && world_size > 1 && leader)
      metrics.write({{"step", step}, {"world_size", world_size}, {"allreduce_buckets", reducer.num_buckets()},
                     {"buckets_started_during_backward", reducer.started_during_backward()}});

    // Each rank checks its own head shard: the step is skipped everywhere if anywhere.
    world->allreduce(verdict, dist::Reduce::min);
    // Deferred: the device decides (from the second applied step on: the first creates the
    // momentum buffers); the host reads the tally when it reports, below.
    sgd_ready = sgd_ready || (deferred_verdict && sgd_state_ready(*sgd));
    const bool deferred = deferred_verdict && sgd_ready;
    if (deferred) {
      if (!tally) tally.emplace(device, config.train.max_nonfinite_steps, counters.nonfinite_consecutive);
      const torch::Tensor finite = verdict[1] > 0;
      const torch::Tensor apply = tally->record(finite, verdict[0], step);
      phases.mark("clip_check_verdict");
      scaler.update_on_device(finite);
      masked_sgd_step(*sgd, apply);
      bn_statistics.restore_unless(apply);
    } else {
      sync_check.disarm();  // the one read back allowed per step
      const torch::Tensor host_verdict = verdict.to(torch::kCPU);
      const double loss_value = host_verdict[0].item<double>();
      const bool finite = host_verdict[1].item<double>() != 0;
      phases.mark("clip_check_verdict");
      scaler.update(!finite);
      if (check_syncs) sync_check.arm();
      if (finite) {
        if (sgd != nullptr)
          foreach_sgd_step(*sgd);
        else
          optimizer->step();
        counters.nonfinite_consecutive = 0;
        window_loss += loss_value;
        ++window_steps;
      } else {
        bn_statistics.restore();
        ++counters.nonfinite_total;
        ++counters.nonfinite_consecutive;
        log::warn(log::cat("step ", step, ": non-finite loss or gradient, step skipped (",
                           counters.nonfinite_consecutive, " in a row)"));
      }
    }
    phases.mark("optimizer");
    if (check_syncs && sync_check.disarm()) ++result.sync_checked_steps;
    counters.step = step + 1;
    const bool timed = counters.step - first_step > untimed_steps;
    if (timed) {
      train_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      ++steps_timed;
    }
    phases.end_step(timed);
    trace.after_step(step);

    if (!deferred && counters.nonfinite_consecutive >= config.train.max_nonfinite_steps) stop_for_nonfinite_steps();
    const bool reports = counters.step == total_steps || counters.step % config.log.every == 0 ||
                         (config.checkpoint.every > 0 && counters.step % config.checkpoint.every == 0) ||
                         (eval_enabled && config.eval.every > 0 && counters.step % config.eval.every == 0) ||
                         static_cast<bool>(hooks.after_step);
    if (tally && reports) {
      // The deferred steps since the last report, in one read (as often as log.every allows).
      const StepTally::Report r = tally->report();
      counters.nonfinite_total += r.skipped;
      counters.nonfinite_consecutive = r.consecutive;
      window_loss += r.loss_sum;
      window_steps += r.applied;
      scaler.sync_from_device();
      if (r.skipped > 0)
        log::warn(log::cat(r.skipped, " step(s) before step ", counters.step,
                           " had a non-finite loss or gradient and were skipped (", r.consecutive, " in a row now)"));
      if (r.stop_step >= 0) {
        counters.step = r.stop_step + 1;  // no update applied after it
        stop_for_nonfinite_steps();
      }
    }

    const bool last = counters.step == total_steps;
    const double images_per_s = train_seconds > 0 ? steps_timed * images_per_step / train_seconds : 0;
    if (window_steps > 0 && (counters.step % config.log.every == 0 || last)) {
      result.final_loss = window_loss / window_steps;
      metrics.write({{"step", counters.step}, {"loss", result.final_loss}, {"lr", lr},
                     {"images_per_s", images_per_s}, {"skipped", counters.nonfinite_total},
                     {"loss_scale", scaler.current_scale()}});
      window_loss = 0;
      window_steps = 0;
    }
    if (progress)
      progress->update(counters.step, {{"loss", fixed(result.final_loss, 4)},
                                    {"lr", fixed(lr, 5)},
                                    {"img/s", fixed(images_per_s, 1)}});
    if (config.checkpoint.every > 0 && counters.step % config.checkpoint.every == 0 && !last) save();
    if (eval_enabled && config.eval.every > 0 && counters.step % config.eval.every == 0 && !last)
      evaluate("periodic");
    if (hooks.after_step && !hooks.after_step(counters.step)) break;
  }
  if (progress) progress->finish();
  save();
  if (eval_enabled) result.eval_after = evaluate("after");

  result.steps = counters.step;
  result.steps_this_run = counters.step - first_step;
  result.images_per_s = train_seconds > 0 ? steps_timed * images_per_step / train_seconds : 0;
  result.skipped_steps = counters.nonfinite_total;
  result.peak_device_memory_mb =
      device.is_cuda() ? static_cast<double>(compat::cuda_peak_allocated_bytes(device.index())) / (1 << 20) : 0.0;
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) result.peak_host_memory_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;
  result.phases = phases.summary();
  if (!result.phases.empty()) metrics.write({{"step", counters.step}, {"phase_ms", phase_json(result.phases)}});
  return result;
}

}  // namespace arcforge::train
