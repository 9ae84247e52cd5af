// The trainer end to end on synth: loss falls and held-out accuracy rises; checkpoint round trip;
// the non-finite guard skips, counts and stops with a usable checkpoint.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "arcforge/cpu/bf16_speed.hpp"
#include "train/nn/cpu_kernel_isa.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/grad_scaler.hpp"
#include "train/train/graphed_step.hpp"
#include "train/train/step_ops.hpp"
#include "train/train/step_tally.hpp"
#include "train/train/step_trace.hpp"
#include "train/train/trainer.hpp"

using namespace arcforge;
using namespace arcforge::train;
namespace fs = std::filesystem;

namespace {

TrainConfig small_config(const std::string& dir, int64_t steps) {
  return parse_config("", {"model.arch=mbf", "model.embedding_size=64", "data.num_identities=50",
                           "train.batch_size=32", "train.steps=" + std::to_string(steps),
                           "train.threads=2", "train.device=cpu", "schedule.warmup_steps=5",
                           "checkpoint.dir=\"" + dir + "\"", "checkpoint.every=0",
                           "eval.pairs=0", "log.every=5"});
}

std::string temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("arcforge_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir.string();
}

void expect_same_weights(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters();
  auto pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  auto ba = a.named_buffers();
  auto bb = b.named_buffers();
  for (const auto& item : ba) EXPECT_TRUE(torch::equal(item.value(), bb[item.key()])) << item.key();
}

// The backbones and heads two checkpoints hold are the same, bit for bit.
void expect_same_checkpoints(const std::string& a, const std::string& b) {
  TrainModules ma = load_modules_from_checkpoint(a), mb = load_modules_from_checkpoint(b);
  expect_same_weights(*ma.backbone, *mb.backbone);
  expect_same_weights(*ma.head, *mb.head);
}

// Hooks that make every loss from step `first` on infinite.
TrainHooks infinite_loss_from(int64_t first) {
  TrainHooks hooks;
  hooks.on_loss = [first](int64_t step, torch::Tensor& loss) {
    if (step >= first) loss = loss + std::numeric_limits<float>::infinity();
  };
  return hooks;
}

// Runs `c` and expects the non-finite guard to stop it with a message holding `text`.
void expect_stopped(const TrainConfig& c, const TrainHooks& hooks, const std::string& text) {
  try {
    run_training(c, "", hooks);
    FAIL() << "expected TrainingStopped";
  } catch (const TrainingStopped& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

// The checkpoint of `c` trained for its first `steps` steps only (c's own directory is replaced by `dir`).
std::string checkpoint_after_steps(TrainConfig c, const std::string& dir, int64_t steps) {
  c.checkpoint.dir = dir;
  TrainHooks stop;
  stop.after_step = [steps](int64_t step) { return step < steps; };
  return run_training(c, "", stop).checkpoint;
}

}  // namespace

TEST(Trainer, LossFallsAndHeldOutAccuracyRises) {
  std::string dir = temp_dir("learn");
  TrainConfig c = small_config(dir, 60);
  c.eval.pairs = 300;
  c.eval.identities = 60;
  std::vector<double> losses;
  TrainResult r = run_training(c);
  ASSERT_TRUE(r.eval_before && r.eval_after);
  EXPECT_EQ(r.steps, 60);
  EXPECT_EQ(r.skipped_steps, 0);
  EXPECT_GT(r.images_per_s, 0);
  EXPECT_GT(r.peak_host_memory_mb, 10.0);  // the process's peak RSS: at least the model and a batch
  // First logged loss vs last, from the JSONL metrics.
  std::ifstream in(r.metrics);
  std::string line;
  double first = -1, last = -1;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("loss")) continue;
    if (first < 0) first = j["loss"];
    last = j["loss"];
  }
  EXPECT_LT(last, first * 0.9) << "first " << first << " last " << last;
  // Accuracy over 300 pairs moves in steps of 1/300 and rose by exactly 0.03 on one CPU (Emerald
  // Rapids: 0.603 -> 0.633); the AUC, which ranks every pair, is the steadier measure of learning
  // (there 0.642 -> 0.736).
  EXPECT_GT(r.eval_after->accuracy, r.eval_before->accuracy)
      << "before " << r.eval_before->accuracy << " after " << r.eval_after->accuracy;
  EXPECT_GT(r.eval_after->auc, r.eval_before->auc + 0.05)
      << "AUC before " << r.eval_before->auc << " after " << r.eval_after->auc;
  fs::remove_all(dir);
}

TEST(Trainer, CheckpointRoundTrip) {
  std::string dir = temp_dir("ckpt");
  TrainConfig c = small_config(dir, 3);
  TrainResult r = run_training(c);
  TrainConfig loaded_config;
  TrainModules loaded = load_modules_from_checkpoint(r.checkpoint, &loaded_config);
  EXPECT_EQ(to_toml(loaded_config), to_toml(c));
  // Saving the loaded modules again and reloading gives the same tensors.
  std::string again = dir + "/again.pt";
  save_checkpoint(again, loaded_config, loaded, nullptr, TrainCounters{});
  TrainModules twice = load_modules_from_checkpoint(again);
  expect_same_weights(*loaded.backbone, *twice.backbone);
  expect_same_weights(*loaded.head, *twice.head);
  // A corrupt file is a clear error naming it.
  std::ofstream(dir + "/bad.pt") << "not a checkpoint";
  try {
    load_modules_from_checkpoint(dir + "/bad.pt");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.pt"), std::string::npos);
  }
  fs::remove_all(dir);
}

TEST(Trainer, NonFiniteStepsAreSkippedCountedAndStopTheRun) {
  std::string dir = temp_dir("nan");
  TrainConfig c = small_config(dir, 12);
  c.train.max_nonfinite_steps = 3;
  // Step 2 alone is poisoned: skipped, counted, the run goes on.
  TrainHooks once;
  once.on_loss = [](int64_t step, torch::Tensor& loss) {
    if (step == 2) loss = loss * std::numeric_limits<float>::quiet_NaN();
  };
  TrainResult r = run_training(c, "", once);
  EXPECT_EQ(r.steps, 12);
  EXPECT_EQ(r.skipped_steps, 1);

  // From step 5 on every loss is infinite: after 3 in a row the run stops with a clear message
  // and the checkpoint holds the weights after step 4, all finite.
  fs::remove_all(dir);
  expect_stopped(c, infinite_loss_from(5), "3 consecutive");
  TrainConfig saved;
  TrainModules m = load_modules_from_checkpoint(latest_checkpoint_path(dir), &saved);
  for (const auto& p : m.backbone->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  // The uninterrupted first 5 steps give the same weights as the stopped run's checkpoint.
  const std::string five_dir = temp_dir("five");
  TrainModules m5 = load_modules_from_checkpoint(checkpoint_after_steps(small_config(dir, 12), five_dir, 5));
  expect_same_weights(*m.backbone, *m5.backbone);
  fs::remove_all(dir);
  fs::remove_all(five_dir);
}

// data.make_ahead makes each batch on a worker thread during the previous step: the batches, and so
// the weights, are the same as made in the loop (gradient accumulation: two batches per step).
TEST(Trainer, MakingBatchesAheadChangesNothing) {
  std::string ahead_dir = temp_dir("ahead"), inline_dir = temp_dir("inline");
  TrainConfig ahead = small_config(ahead_dir, 3);
  ahead.train.grad_accumulation = 2;
  ahead.data.make_ahead = "on";
  TrainConfig in_loop = small_config(inline_dir, 3);
  in_loop.train.grad_accumulation = 2;
  in_loop.data.make_ahead = "off";
  expect_same_checkpoints(run_training(ahead).checkpoint, run_training(in_loop).checkpoint);
  fs::remove_all(ahead_dir);
  fs::remove_all(inline_dir);
}

// Evaluating held-out pairs between steps (eval mode, no grad, then back to training) leaves the
// training run alone: make demo's evaluation cadence can change without changing what it trains.
TEST(Trainer, EvaluatingBetweenStepsChangesNothing) {
  std::string evaluated_dir = temp_dir("evaluated"), plain_dir = temp_dir("plain");
  TrainConfig evaluated = small_config(evaluated_dir, 4);
  evaluated.eval.pairs = 40;
  evaluated.eval.identities = 20;
  evaluated.eval.every = 1;
  const TrainResult with_eval = run_training(evaluated);
  ASSERT_TRUE(with_eval.eval_after.has_value());
  expect_same_checkpoints(with_eval.checkpoint, run_training(small_config(plain_dir, 4)).checkpoint);
  fs::remove_all(evaluated_dir);
  fs::remove_all(plain_dir);
}

// log.phase_timing reports every phase of the step, each finished no earlier than issued, within
// the step's wall time, and leaves the trajectory alone (the same weights as an untimed run).
TEST(Trainer, PhaseTimingReportsEveryPhaseAndChangesNothing) {
  std::string timed_dir = temp_dir("phases"), plain_dir = temp_dir("phases_plain");
  TrainConfig timed_config = small_config(timed_dir, 2);
  timed_config.log.phase_timing = true;
  const auto start = std::chrono::steady_clock::now();
  TrainResult timed = run_training(timed_config);
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  TrainResult plain = run_training(small_config(plain_dir, 2));
  EXPECT_TRUE(plain.phases.empty());

  std::vector<std::string> names;
  double done_sum = 0;
  for (const auto& t : timed.phases) {
    names.push_back(t.phase);
    EXPECT_GE(t.host_ms, 0) << t.phase;
    EXPECT_GE(t.done_ms, t.host_ms) << t.phase;
    done_sum += t.done_ms;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"step_setup", "data", "forward", "backward", "gradient_reduce",
                                             "clip_check_verdict", "optimizer"}));
  EXPECT_LT(done_sum * 2, wall_ms) << "two steps' phases exceed the run's wall time";
  // The metrics log carries the same figures.
  std::ifstream in(timed.metrics);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  const auto logged = nlohmann::json::parse(last).at("phase_ms");
  EXPECT_EQ(logged.size(), timed.phases.size());
  EXPECT_DOUBLE_EQ(logged.at("forward").at("done").get<double>(), timed.phases[2].done_ms);

  expect_same_checkpoints(timed.checkpoint, plain.checkpoint);
  fs::remove_all(timed_dir);
  fs::remove_all(plain_dir);
}

// log.profile's steps: after the three warm-up steps, or as late as a short run allows.
TEST(StepTrace, TracesTheStepsAfterTheWarmUp) {
  const auto steps = [](int64_t first, int64_t total, int64_t count) {
    const TracedSteps t = traced_steps(first, total, count);
    return std::pair<int64_t, int64_t>{t.first, t.count};
  };
  EXPECT_EQ(steps(0, 100, 2), (std::pair<int64_t, int64_t>{3, 2}));
  EXPECT_EQ(steps(0, 4, 2), (std::pair<int64_t, int64_t>{2, 2}));
  EXPECT_EQ(steps(0, 1, 2), (std::pair<int64_t, int64_t>{0, 1}));
  EXPECT_EQ(steps(40, 100, 3), (std::pair<int64_t, int64_t>{43, 3}));  // a resumed run
  EXPECT_EQ(steps(10, 10, 2), (std::pair<int64_t, int64_t>{10, 0}));
}

// log.profile writes a Chrome trace (a JSON array of complete events) holding exactly the traced
// steps' operators, forward and backward, and leaves the trajectory alone.
TEST(Trainer, ProfileWritesAChromeTraceOfTheTracedStepsAndChangesNothing) {
  const std::string dir = temp_dir("profile");
  const auto convolutions_traced = [&](int64_t profile_steps, const std::string& run) {
    TrainConfig c = small_config(dir + "/" + run, 5);
    c.log.profile = dir + "/" + run + ".trace.json";
    c.log.profile_steps = profile_steps;
    const TrainResult r = run_training(c);
    std::ifstream in(c.log.profile);
    const nlohmann::json events = nlohmann::json::parse(in);
    EXPECT_TRUE(events.is_array());
    int64_t forward = 0, backward = 0, own_ops = 0;
    for (const auto& e : events) {
      EXPECT_EQ(e.at("ph"), "X");
      EXPECT_GE(e.at("dur").get<double>(), 0.0);
      const std::string name = e.at("name");
      forward += name == "aten::convolution";
      backward += name == "aten::convolution_backward";
      // arcforge's own autograd functions' forward passes, named (train/nn/traced_op.hpp).
      own_ops += name == "arcforge::batch_norm_prelu" || name == "arcforge::grouped_conv";
    }
    EXPECT_EQ(forward, backward) << run;
    EXPECT_GT(own_ops, 0) << run;
    return std::pair<int64_t, std::string>{forward, r.checkpoint};
  };
  const auto [one_step, one_checkpoint] = convolutions_traced(1, "one");
  const auto [two_steps, two_checkpoint] = convolutions_traced(2, "two");
  EXPECT_GT(one_step, 20) << "mbf has more than 20 convolutions";
  EXPECT_EQ(two_steps, 2 * one_step);
  const TrainResult plain = run_training(small_config(dir + "/plain", 5));
  expect_same_checkpoints(one_checkpoint, plain.checkpoint);
  expect_same_checkpoints(two_checkpoint, plain.checkpoint);
  // A trace into a folder that does not exist is refused before anything trains.
  TrainConfig missing = small_config(dir + "/missing", 5);
  missing.log.profile = dir + "/no/such/folder/trace.json";
  EXPECT_THROW(run_training(missing), ConfigError);
  EXPECT_FALSE(fs::exists(dir + "/missing/checkpoint.pt"));
  fs::remove_all(dir);
}

// train.cuda_graph needs CUDA: on a CPU run it is refused by name before anything trains.
TEST(Trainer, CudaGraphOnTheCpuIsAConfigError) {
  std::string dir = temp_dir("graph_cpu");
  TrainConfig c = small_config(dir, 2);
  c.train.cuda_graph = true;
  try {
    run_training(c);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.cuda_graph needs a CUDA device"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(fs::path(dir) / "checkpoint.pt"));
  fs::remove_all(dir);
}

// train.precision "auto": bf16 on a GPU with bf16 tensor cores and on a CPU where bf16 outpaces
// fp32 (AVX512-BF16, which the kernels' instruction-set level says, with AMX or from AMD), fp16 on
// older GPUs, fp32 on other CPUs; the run reports what it used.
TEST(Trainer, AutoPrecisionIsBf16WhereTheDeviceHasItFp16OnOlderGpusFp32Elsewhere) {
  namespace an = arcforge::nn;
  const bool native = an::cpu_kernel_best_isa() == an::CpuKernelIsa::avx512_bf16;
  const bool fast = native && cpu::bf16_outpaces_fp32(cpu::this_cpus_bf16_hardware());
  EXPECT_EQ(resolve_precision("auto", torch::kCPU), fast ? "bf16" : "fp32");
  for (const bool cpu_bf16 : {false, true}) {  // on a GPU the CPU does not matter
    EXPECT_EQ(resolve_precision("auto", PrecisionSupport{true, true, cpu_bf16, cpu_bf16, cpu_bf16}), "bf16");  // H100
    EXPECT_EQ(resolve_precision("auto", PrecisionSupport{true, false, cpu_bf16, cpu_bf16, cpu_bf16}), "fp16");  // V100
  }
  EXPECT_EQ(resolve_precision("auto", PrecisionSupport{false, false, true, true, true}), "bf16");    // AMX, Zen 4
  EXPECT_EQ(resolve_precision("auto", PrecisionSupport{false, false, true, true, false}), "fp32");   // Intel, no AMX
  EXPECT_EQ(resolve_precision("auto", PrecisionSupport{false, false, false, false, false}), "fp32");
  EXPECT_EQ(resolve_precision("bf16", PrecisionSupport{true, false, false}), "bf16");  // asked for: kept
  EXPECT_EQ(precision_support(torch::kCPU).cpu_bf16, native);
  EXPECT_EQ(precision_support(torch::kCPU).cpu_bf16_fast, fast);
  EXPECT_FALSE(precision_support(torch::kCPU).cuda);
  for (const std::string name : {"fp32", "bf16", "fp16"}) EXPECT_EQ(resolve_precision(name, torch::kCPU), name);
  // A CPU without it, as the AVX2 level stands for one.
  an::force_cpu_kernel_isa(an::CpuKernelIsa::avx2);
  EXPECT_EQ(resolve_precision("auto", torch::kCPU), "fp32");
  an::clear_forced_cpu_kernel_isa();

  std::string dir = temp_dir("auto_precision");
  TrainConfig c = small_config(dir, 2);
  c.train.precision = "auto";
  const TrainResult r = run_training(c);
  EXPECT_EQ(r.precision, fast ? "bf16" : "fp32");
  EXPECT_EQ(r.steps, 2);
  fs::remove_all(dir);
}

// bf16 asked for where the device cannot compute it well gets a warning that says what happens:
// a CPU without AVX-512 (no oneDNN bf16 kernels: the dense layers compute in fp32), an AVX-512 CPU
// where bf16 is slower than fp32 (Intel without AMX), and a GPU without bf16 tensor cores (use
// fp16). Nothing for the precisions that run well.
TEST(Trainer, Bf16WhereTheDeviceLacksItIsWarnedAbout) {
  namespace an = arcforge::nn;
  const PrecisionSupport avx2_cpu{false, false, false, false}, avx512_cpu{false, false, false, true},
      intel_bf16_cpu{false, false, true, true, false}, amx_cpu{false, false, true, true, true},
      v100{true, false, false, false}, h100{true, true, false, false};
  const std::string cpu_warning = precision_warning("bf16", avx2_cpu);
  EXPECT_NE(cpu_warning.find("without AVX-512"), std::string::npos) << cpu_warning;
  EXPECT_NE(cpu_warning.find("compute in fp32"), std::string::npos) << cpu_warning;
  for (const auto& slow : {avx512_cpu, intel_bf16_cpu}) {
    const std::string warning = precision_warning("bf16", slow);
    EXPECT_NE(warning.find("likely slower than fp32"), std::string::npos) << warning;
  }
  EXPECT_NE(precision_warning("bf16", v100).find("fp16"), std::string::npos);
  for (const auto& ok : {amx_cpu, h100}) EXPECT_EQ(precision_warning("bf16", ok), "");
  for (const auto& any : {avx2_cpu, avx512_cpu, intel_bf16_cpu, amx_cpu, v100, h100}) {
    for (const std::string name : {"fp32", "fp16"}) EXPECT_EQ(precision_warning(name, any), "");
  }
  EXPECT_EQ(precision_support(torch::kCPU).cpu_avx512, an::cpu_kernel_best_isa() >= an::CpuKernelIsa::avx512);

  // The trainer says it (one bf16 step at batch 4, the kernels forced to AVX2).
  an::force_cpu_kernel_isa(an::CpuKernelIsa::avx2);
  std::string dir = temp_dir("bf16_warning");
  TrainConfig c = small_config(dir, 1);
  c.train.precision = "bf16";
  c.train.batch_size = 4;
  testing::internal::CaptureStderr();
  const TrainResult r = run_training(c);
  const std::string err = testing::internal::GetCapturedStderr();
  an::clear_forced_cpu_kernel_isa();
  EXPECT_EQ(r.precision, "bf16");  // asked for: kept
  EXPECT_NE(err.find(cpu_warning), std::string::npos) << err;
  fs::remove_all(dir);
}

TEST(GraphedStep, WithoutCudaInLibtorchItIsAConfigError) {
#ifdef ARCFORGE_WITH_CUDA
  GTEST_SKIP() << "this libtorch has CUDA";
#else
  try {
    GraphedStep graphed(true);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.cuda_graph: CUDA graphs need libtorch built with CUDA"),
              std::string::npos)
        << e.what();
  }
#endif
}

// Disabled, a step is the eager step: gradients cleared (set to none), then the work, on the
// batches as given.
TEST(GraphedStep, DisabledRunsTheWorkEagerlyOnTheGivenBatches) {
  GraphedStep eager(false);
  EXPECT_FALSE(eager.enabled());
  EXPECT_FALSE(eager.captures_at(100));
  EXPECT_FALSE(eager.replaying());
  auto p = torch::ones({3}, torch::requires_grad());
  (p * 2).sum().backward();
  ASSERT_TRUE(p.grad().defined());
  Batch b{torch::rand({2, 3, 4, 4}), torch::tensor({0, 1}, torch::kInt64)};
  const auto& staged = eager.stage({b});
  ASSERT_EQ(staged.size(), 1u);
  EXPECT_EQ(staged[0].images.data_ptr(), b.images.data_ptr());
  int runs = 0;
  eager.run(0, [&] {
    EXPECT_FALSE(p.grad().defined());
    ++runs;
  }, {p});
  EXPECT_EQ(runs, 1);
}

// A graph's inputs: buffers allocated once (memory format kept) and refilled in place; another
// shape is refused by name.
TEST(StaticBatches, RefillTheSameBuffersAndRefuseAnotherShape) {
  StaticBatches inputs;
  auto make = [](double value, int64_t n) {
    return Batch{torch::full({n, 3, 4, 4}, value).contiguous(at::MemoryFormat::ChannelsLast),
                 torch::full({n}, static_cast<int64_t>(value), torch::kInt64)};
  };
  const Batch first = make(1, 2), second = make(2, 2);
  const std::vector<Batch>& a = inputs.stage({first});
  const void* images = a[0].images.data_ptr();
  const void* labels = a[0].labels.data_ptr();
  EXPECT_TRUE(a[0].images.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::equal(a[0].images, first.images));
  EXPECT_NE(images, first.images.data_ptr());
  const std::vector<Batch>& b = inputs.stage({second});
  EXPECT_EQ(b[0].images.data_ptr(), images);
  EXPECT_EQ(b[0].labels.data_ptr(), labels);
  EXPECT_TRUE(torch::equal(b[0].images, second.images));
  EXPECT_TRUE(torch::equal(b[0].labels, second.labels));
  try {
    inputs.stage({make(3, 5)});
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("images [2, 3, 4, 4], this batch [5, 3, 4, 4]"), std::string::npos) << e.what();
  }
}

// The fp16 loss scale held in a device tensor (what a replayed CUDA graph reads) scales losses and
// unscales gradients exactly as the host value does, through growth, backoff and a restore.
TEST(GradScaler, ScaleKeptOnTheDeviceGivesTheHostScalesResults) {
  GradScaler host(true, 1024.0, 2.0, 0.5, 2);
  GradScaler tensor(true, 1024.0, 2.0, 0.5, 2);
  tensor.keep_on_device(torch::kCPU);
  torch::manual_seed(3);
  auto run_step = [&](GradScaler& scaler, const torch::Tensor& w0, const torch::Tensor& x) {
    auto w = w0.clone().requires_grad_(true);
    auto loss = (w * x).sum();
    auto scaled = scaler.scale(loss);
    scaled.backward();
    scaler.unscale({w});
    return std::make_pair(scaled.detach(), w.grad().clone());
  };
  const std::vector<bool> nonfinite = {false, false, true, false, false, false, true};
  for (size_t i = 0; i <= nonfinite.size(); ++i) {
    auto w0 = torch::randn({5});
    auto x = torch::randn({5});
    auto [host_loss, host_grad] = run_step(host, w0, x);
    auto [tensor_loss, tensor_grad] = run_step(tensor, w0, x);
    EXPECT_TRUE(torch::equal(host_loss, tensor_loss)) << "step " << i << ", scale " << host.current_scale();
    EXPECT_TRUE(torch::equal(host_grad, tensor_grad)) << "step " << i;
    // Independent reference: the unscaled gradient of sum(w * x) is x.
    EXPECT_LT((tensor_grad.to(torch::kDouble) - x.to(torch::kDouble)).abs().max().item<double>(), 1e-6);
    EXPECT_DOUBLE_EQ(host_loss.item<double>() / host.current_scale(), (w0 * x).sum().item<double>());
    if (i == nonfinite.size()) break;
    host.update(nonfinite[i]);
    tensor.update(nonfinite[i]);
    EXPECT_EQ(host.current_scale(), tensor.current_scale());
  }
  EXPECT_EQ(host.current_scale(), 1024.0);  // x2 (2 finite), x0.5, x2, x0.5: back where it started
  // The same sequence decided on the device: the same scales and counts, read back at the end.
  GradScaler on_device(true, 1024.0, 2.0, 0.5, 2);
  on_device.keep_on_device(torch::kCPU);
  GradScaler reference(true, 1024.0, 2.0, 0.5, 2);
  for (const bool bad : {false, false, true, false, false, false, true, false}) {
    on_device.update_on_device(torch::tensor(!bad));
    reference.update(bad);
    on_device.sync_from_device();
    EXPECT_EQ(on_device.current_scale(), reference.current_scale());
    EXPECT_EQ(on_device.growth_tracker(), reference.growth_tracker());
    auto g = torch::full({3}, 6.0f).requires_grad_(true);
    g.mutable_grad() = torch::full({3}, 6.0f);
    on_device.unscale({g});
    EXPECT_EQ(g.grad()[0].item<float>(), static_cast<float>(6.0 / reference.current_scale()));
  }
  tensor.restore(8.0, 0);
  auto loss = torch::tensor(3.0f);
  EXPECT_EQ(tensor.scale(loss).item<float>(), 24.0f);
}

// train.deferred_verdict = on: the same run as reading the verdict every step, bit for bit, with a
// skipped step in it.
TEST(Trainer, DeferredVerdictGivesTheSameRunAsReadingEveryStep) {
  std::string on_dir = temp_dir("deferred_on"), off_dir = temp_dir("deferred_off");
  TrainHooks nan_at_3;
  nan_at_3.on_loss = [](int64_t step, torch::Tensor& loss) {
    if (step == 3) loss = loss * std::numeric_limits<float>::quiet_NaN();
  };
  TrainConfig on = small_config(on_dir, 12), off = small_config(off_dir, 12);
  on.train.deferred_verdict = "on";
  off.train.deferred_verdict = "off";
  TrainResult a = run_training(on, "", nan_at_3), b = run_training(off, "", nan_at_3);
  EXPECT_EQ(a.skipped_steps, 1);
  EXPECT_EQ(b.skipped_steps, 1);
  EXPECT_EQ(a.final_loss, b.final_loss);
  expect_same_checkpoints(a.checkpoint, b.checkpoint);
  fs::remove_all(on_dir);
  fs::remove_all(off_dir);
}

// Deferred, the guard still stops after max_nonfinite_steps in a row, at the same step, with the
// last good weights in the checkpoint, though the host only reads the tally every log.every steps.
TEST(Trainer, DeferredVerdictStopsWithTheLastGoodWeights) {
  std::string dir = temp_dir("deferred_stop"), five_dir = temp_dir("deferred_five");
  TrainConfig c = small_config(dir, 20);
  c.train.deferred_verdict = "on";
  c.train.max_nonfinite_steps = 3;
  c.log.every = 10;  // the tally is read at step 10: three steps after the stop
  expect_stopped(c, infinite_loss_from(5), "training stopped at step 8: 3 consecutive");
  expect_same_checkpoints(latest_checkpoint_path(dir), checkpoint_after_steps(small_config(dir, 20), five_dir, 5));
  fs::remove_all(dir);
  fs::remove_all(five_dir);
}

// masked_sgd_step: with apply true, foreach_sgd_step bit for bit (momentum, weight decay, Nesterov);
// with apply false, nothing moves, NaN gradients included.
TEST(StepOps, MaskedSgdStepIsTheStepOrNothing) {
  for (const bool nesterov : {false, true}) {
    torch::manual_seed(11);
    auto make = [&] {
      std::vector<torch::Tensor> params{torch::randn({4, 3}).requires_grad_(true), torch::randn({5}).requires_grad_(true)};
      auto options = torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(5e-4).nesterov(nesterov);
      return std::make_pair(params, std::make_unique<torch::optim::SGD>(params, options));
    };
    auto [pa, a] = make();
    std::vector<torch::Tensor> pb;
    for (const auto& p : pa) pb.push_back(p.detach().clone().requires_grad_(true));
    torch::optim::SGD b(pb, torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(5e-4).nesterov(nesterov));
    auto set_grads = [](std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads) {
      for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = grads[i].clone();
    };
    for (int step = 0; step < 4; ++step) {
      std::vector<torch::Tensor> grads{torch::randn({4, 3}), torch::randn({5})};
      set_grads(pa, grads);
      set_grads(pb, grads);
      if (step == 0) {
        EXPECT_FALSE(sgd_state_ready(*a));  // gradients, but no momentum buffers yet
        foreach_sgd_step(*a);  // creates the buffers
        foreach_sgd_step(b);
        EXPECT_TRUE(sgd_state_ready(*a));
        continue;
      }
      masked_sgd_step(*a, torch::tensor(true));
      foreach_sgd_step(b);
      for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "step " << step;
    }
    std::vector<torch::Tensor> before;
    for (const auto& p : pa) before.push_back(p.detach().clone());
    set_grads(pa, {torch::full({4, 3}, std::numeric_limits<float>::quiet_NaN()), torch::randn({5})});
    masked_sgd_step(*a, torch::tensor(false));
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], before[i]));
    // ...and the momentum buffers did not move either: the next applied step is still b's.
    set_grads(pa, {torch::ones({4, 3}), torch::ones({5})});
    set_grads(pb, {torch::ones({4, 3}), torch::ones({5})});
    masked_sgd_step(*a, torch::tensor(true));
    foreach_sgd_step(b);
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "after the skipped step";
  }
}

// The tally: skipped and applied steps, the loss summed over applied ones, the run of skips
// carried across reports, and no update applied once max_consecutive skips in a row stopped it.
TEST(StepTally, CountsSkipsAndStopsAfterTooManyInARow) {
  StepTally tally(torch::kCPU, 3, /*consecutive=*/1);
  auto record = [&](bool finite, double loss, int64_t step) {
    return tally.record(torch::tensor(finite), torch::tensor(loss, torch::kDouble), step).item<bool>();
  };
  EXPECT_FALSE(record(false, std::numeric_limits<double>::quiet_NaN(), 4));  // 2 in a row, with the one before
  EXPECT_TRUE(record(true, 1.5, 5));
  EXPECT_TRUE(record(true, 2.0, 6));
  EXPECT_FALSE(record(false, 9.0, 7));
  StepTally::Report r = tally.report();
  EXPECT_EQ(r.skipped, 2);
  EXPECT_EQ(r.applied, 2);
  EXPECT_DOUBLE_EQ(r.loss_sum, 3.5);
  EXPECT_EQ(r.consecutive, 1);
  EXPECT_EQ(r.stop_step, -1);
  EXPECT_FALSE(record(false, 0.0, 8));
  EXPECT_FALSE(record(false, 0.0, 9));  // the third in a row: the run stops here
  EXPECT_FALSE(record(true, 1.0, 10));  // finite, but after the stop: not applied, not counted
  r = tally.report();
  EXPECT_EQ(r.skipped, 2);
  EXPECT_EQ(r.applied, 0);
  EXPECT_EQ(r.consecutive, 3);
  EXPECT_EQ(r.stop_step, 9);
}
