// A run SIGKILLed after a checkpoint and resumed with `arcforge train --resume latest` ends with
// weights bit-identical to the uninterrupted run (CPU, same thread count); so does a run stopped
// between the two renames of a save, which resumes from the previous checkpoint it kept.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "child_process.hpp"
#include "same_weights.hpp"
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
    // The kill may land between the two renames of a later save: then only .prev is there.
    const std::string saved = existing_checkpoint(ckpt);
    TrainConfig cfg = read_checkpoint_config(saved);
    TrainModules m = make_modules(cfg);
    load_checkpoint(saved, m, nullptr, &at_kill);
  }
  EXPECT_GT(at_kill.step, 0);
  EXPECT_LT(at_kill.step, 16) << "the run finished before it could be killed";

  auto args = train_args(killed);
  args.push_back("--resume");
  args.push_back("latest");
  ASSERT_EQ(wait_exit(spawn(args)), 0);

  TrainModules a = load_modules_from_checkpoint(latest_checkpoint_path(straight));
  TrainModules b = load_modules_from_checkpoint(ckpt);
  arcforge::test::expect_same_model(a, b);
  fs::remove_all(base);
}

// A kill between the renames of a save leaves checkpoint.prev.pt (step 2) and the new file still
// under its temporary name: `--resume latest` takes the previous one and ends bit-identical.
TEST(Resume, StoppedMidSaveResumesFromThePreviousCheckpoint) {
  auto base = fs::temp_directory_path() / ("arcforge_resume_prev_" + std::to_string(getpid()));
  fs::remove_all(base);
  const std::string straight = (base / "straight").string(), stopped = (base / "stopped").string();
  auto config = [](const std::string& dir) {
    return parse_config("", {"model.arch=mbf", "model.embedding_size=32", "data.num_identities=20",
                             "train.batch_size=8", "train.steps=6", "train.threads=2", "train.device=cpu",
                             "checkpoint.dir=\"" + dir + "\"", "checkpoint.every=2", "eval.pairs=0",
                             "log.every=2"});
  };
  run_training(config(straight));
  TrainHooks stop_at_3;  // saves at step 2 (periodic) and 3 (at the stop)
  stop_at_3.after_step = [](int64_t step) { return step < 3; };
  run_training(config(stopped), "", stop_at_3);
  const std::string latest = latest_checkpoint_path(stopped);
  ASSERT_EQ(read_checkpoint_step(latest), 3);
  ASSERT_EQ(read_checkpoint_step(previous_checkpoint_path(latest)), 2);
  fs::rename(latest, latest + ".next");  // as if killed between the two renames of the step-3 save
  EXPECT_EQ(existing_checkpoint(latest), previous_checkpoint_path(latest));

  std::vector<std::string> args = {ARCFORGE_CLI, "train", "--resume", "latest", "--out", stopped, "--threads", "2"};
  if (!fs::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  // With neither file there, --resume latest says so (it used to report a failed read).
  std::string none;
  EXPECT_EQ(arcforge::test::run_cli("train --resume latest --out '" + (base / "empty").string() + "'", &none), 1);
  EXPECT_NE(none.find("checkpoint.pt: no checkpoint to resume from (nor "), std::string::npos) << none;
  ASSERT_EQ(wait_exit(spawn(args)), 0);
  EXPECT_EQ(read_checkpoint_step(latest), 6);
  TrainModules a = load_modules_from_checkpoint(latest_checkpoint_path(straight));
  TrainModules b = load_modules_from_checkpoint(latest);
  arcforge::test::expect_same_model(a, b);
  fs::remove_all(base);
}
