// A run SIGKILLed after a checkpoint and resumed with `arcforge train --resume latest` ends with
// weights bit-identical to the uninterrupted run (CPU, same thread count).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "child_process.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/trainer.hpp"

using namespace arcforge::train;
using arcforge::test::spawn;
using arcforge::test::wait_exit;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> train_args(const std::string& dir) {
  return {ARCFORGE_CLI, "train", "--arch", "mbf", "--steps", "16", "--batch", "8", "--threads", "2",
          "--device", "cpu", "--out", dir, "--set", "model.embedding_size=64",
          "--set", "data.num_identities=40", "--set", "checkpoint.every=2", "--set", "eval.pairs=0",
          "--set", "schedule.warmup_steps=4", "--set", "log.every=4"};
}

}  // namespace

TEST(Resume, SigkillThenResumeIsBitIdentical) {
  auto base = fs::temp_directory_path() / ("arcforge_resume_" + std::to_string(getpid()));
  fs::remove_all(base);
  std::string straight = (base / "straight").string(), killed = (base / "killed").string();

  ASSERT_EQ(wait_exit(spawn(train_args(straight))), 0);

  // Start the second run and SIGKILL it as soon as its first checkpoint appears.
  pid_t pid = spawn(train_args(killed));
  std::string ckpt = latest_checkpoint_path(killed);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  while (!fs::exists(ckpt) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(fs::exists(ckpt));
  kill(pid, SIGKILL);
  ASSERT_EQ(wait_exit(pid), -SIGKILL);

  TrainCounters at_kill;
  {
    TrainConfig cfg = read_checkpoint_config(ckpt);
    TrainModules m = make_modules(cfg);
    load_checkpoint(ckpt, m, nullptr, &at_kill);
  }
  EXPECT_GT(at_kill.step, 0);
  EXPECT_LT(at_kill.step, 16) << "the run finished before it could be killed";

  auto args = train_args(killed);
  args.push_back("--resume");
  args.push_back("latest");
  ASSERT_EQ(wait_exit(spawn(args)), 0);

  TrainModules a = load_modules_from_checkpoint(latest_checkpoint_path(straight));
  TrainModules b = load_modules_from_checkpoint(ckpt);
  for (const auto& p : a.backbone->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), b.backbone->named_parameters()[p.key()])) << p.key();
  for (const auto& p : a.backbone->named_buffers())
    EXPECT_TRUE(torch::equal(p.value(), b.backbone->named_buffers()[p.key()])) << p.key();
  EXPECT_TRUE(torch::equal(a.head->weight, b.head->weight));
  fs::remove_all(base);
}
