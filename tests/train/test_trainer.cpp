// The trainer end to end on synth: loss falls and held-out accuracy rises; checkpoint round trip;
// the non-finite guard skips, counts and stops with a usable checkpoint.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "train/train/checkpoint.hpp"
#include "train/train/grad_scaler.hpp"
#include "train/train/graphed_step.hpp"
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
  EXPECT_GT(r.eval_after->accuracy, r.eval_before->accuracy + 0.03)
      << "before " << r.eval_before->accuracy << " after " << r.eval_after->accuracy;
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
  TrainHooks always;
  always.on_loss = [](int64_t step, torch::Tensor& loss) {
    if (step >= 5) loss = loss + std::numeric_limits<float>::infinity();
  };
  try {
    run_training(c, "", always);
    FAIL() << "expected TrainingStopped";
  } catch (const TrainingStopped& e) {
    EXPECT_NE(std::string(e.what()).find("3 consecutive"), std::string::npos) << e.what();
  }
  TrainConfig saved;
  TrainModules m = load_modules_from_checkpoint(latest_checkpoint_path(dir), &saved);
  for (const auto& p : m.backbone->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  // The uninterrupted first 5 steps give the same weights as the stopped run's checkpoint.
  TrainConfig five = small_config(temp_dir("five"), 12);
  TrainHooks stop_at_5;
  stop_at_5.after_step = [](int64_t step) { return step < 5; };
  TrainResult r5 = run_training(five, "", stop_at_5);
  TrainModules m5 = load_modules_from_checkpoint(r5.checkpoint);
  expect_same_weights(*m.backbone, *m5.backbone);
  fs::remove_all(dir);
  fs::remove_all(five.checkpoint.dir);
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
  TrainModules a = load_modules_from_checkpoint(run_training(ahead).checkpoint);
  TrainModules b = load_modules_from_checkpoint(run_training(in_loop).checkpoint);
  expect_same_weights(*a.backbone, *b.backbone);
  expect_same_weights(*a.head, *b.head);
  fs::remove_all(ahead_dir);
  fs::remove_all(inline_dir);
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

  TrainModules a = load_modules_from_checkpoint(timed.checkpoint);
  TrainModules b = load_modules_from_checkpoint(plain.checkpoint);
  expect_same_weights(*a.backbone, *b.backbone);
  expect_same_weights(*a.head, *b.head);
  fs::remove_all(timed_dir);
  fs::remove_all(plain_dir);
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
    EXPECT_NE(std::string(e.what()).find("images [2,3,4,4], this batch [5,3,4,4]"), std::string::npos) << e.what();
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
  tensor.restore(8.0, 0);
  auto loss = torch::tensor(3.0f);
  EXPECT_EQ(tensor.scale(loss).item<float>(), 24.0f);
}
