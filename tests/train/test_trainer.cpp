// The trainer end to end on synth: loss falls and held-out accuracy rises; checkpoint round trip;
// the non-finite guard skips, counts and stops with a usable checkpoint.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "train/train/checkpoint.hpp"
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
