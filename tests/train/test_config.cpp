// Config parsing, overrides, round trip through to_toml, and the LR schedules against closed forms.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "arcforge/common/error.hpp"
#include "train/nn/backbone.hpp"
#include "train/train/config.hpp"
#include "train/train/lr_schedule.hpp"

using namespace arcforge;
using namespace arcforge::train;

TEST(Config, DefaultsOverridesAndRoundTrip) {
  TrainConfig c = parse_config("[model]\narch = \"r18\"\n[train]\nsteps = 7\n",
                               {"optimizer.lr=0.25", "head.margin=cosface", "train.batch_size=3"});
  EXPECT_EQ(c.model.arch, "r18");
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.25);
  EXPECT_EQ(c.train.batch_size, 3);
  EXPECT_EQ(c.margin_preset, "cosface");
  EXPECT_DOUBLE_EQ(c.margin.m3, 0.4);
  // A field set explicitly wins over the preset.
  TrainConfig d = parse_config("[head]\nmargin = \"arcface\"\nm2 = 0.3\n", {});
  EXPECT_DOUBLE_EQ(d.margin.m2, 0.3);
  // to_toml reads back to the same configuration, doubles exactly.
  c.optimizer.lr = 0.1 + 1e-17 + 1.0 / 3.0;
  TrainConfig back = parse_config(to_toml(c), {});
  EXPECT_EQ(to_toml(back), to_toml(c));
  EXPECT_EQ(back.optimizer.lr, c.optimizer.lr);
}

TEST(Config, ErrorsNameTheProblem) {
  auto message = [](const std::string& text, std::vector<std::string> o = {}) {
    try {
      parse_config(text, o, "test.toml");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("[model]\narhc = \"r50\"\n").find("unknown key 'model.arhc'"), std::string::npos);
  EXPECT_NE(message("[train]\nbatch_size = \"big\"\n").find("train.batch_size"), std::string::npos);
  EXPECT_NE(message("[train]\nprecision = \"fp8\"\n").find("fp8"), std::string::npos);
  EXPECT_EQ(message("[train]\nprecision = \"auto\"\n"), "no error");
  EXPECT_NE(message("[optimizer]\nname = \"lion\"\n").find("lion"), std::string::npos);
  EXPECT_NE(message("[train\n").find("test.toml:1"), std::string::npos);
  EXPECT_NE(message("", {"nodot=3"}).find("section.key=value"), std::string::npos);
  EXPECT_NE(message("[head]\nmargin = \"sphereface2\"\n").find("sphereface2"), std::string::npos);
  // Counts whose products would overflow int64 are refused by name, not cast into garbage.
  EXPECT_NE(message("", {"train.batch_size=4294967296", "train.grad_accumulation=4294967296"}).find("train.batch_size"),
            std::string::npos);
  EXPECT_NE(message("", {"train.steps=0", "train.epochs=1e300", "data.num_images=1000000"}).find("at most 10^12"),
            std::string::npos);
  EXPECT_NE(message("", {"train.steps=0", "train.epochs=nan", "data.num_images=1000"}).find("train.epochs"),
            std::string::npos);
  // Phase timing synchronises after every phase: checking for host syncs alongside it is a contradiction.
  EXPECT_NE(message("", {"log.sync_check=true", "log.phase_timing=true"}).find("log.sync_check"), std::string::npos);
  EXPECT_EQ(message("", {"log.sync_check=true"}), "no error");
}

TEST(Config, EpochsDeriveSteps) {
  TrainConfig c = parse_config(
      "[train]\nsteps = 0\nepochs = 2\nbatch_size = 128\n[data]\nnum_images = 1000\n", {});
  EXPECT_EQ(c.total_steps(), 14);  // arcface_torch: 1000 // 128 * 2
  // Several processes share an epoch: the global batch is batch_size x world_size.
  EXPECT_EQ(c.total_steps(2), 6);  // 1000 // 256 * 2
  EXPECT_EQ(c.total_steps(8), 0);  // 1000 // 1024 = 0 steps per epoch
}

// Closed forms written out independently of lr_schedule.cpp.
// Every preset in configs/ loads, names a known backbone and makes steps for 1 and 8 processes.
TEST(Config, EveryPresetLoads) {
  int presets = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ARCFORGE_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".toml") continue;
    ++presets;
    const std::string path = entry.path().string();
    TrainConfig c;
    ASSERT_NO_THROW(c = load_config(path, {})) << path;
    EXPECT_NO_THROW(arcforge::nn::make_backbone(c.model)) << path;
    EXPECT_GT(c.total_steps(1), 0) << path;
    EXPECT_GT(c.total_steps(8), 0) << path;
    EXPECT_LT(c.schedule.warmup_steps, c.total_steps(8)) << path;
  }
  EXPECT_GE(presets, 10);
}

TEST(LrSchedule, PolyWithWarmup) {
  ScheduleConfig s;
  s.name = "poly";
  s.warmup_steps = 100;
  s.power = 2.0;
  LrSchedule lr(s, 0.1, 1100);
  EXPECT_DOUBLE_EQ(lr.at(0), 0.0);
  EXPECT_DOUBLE_EQ(lr.at(50), 0.05);
  EXPECT_DOUBLE_EQ(lr.at(99), 0.099);
  EXPECT_DOUBLE_EQ(lr.at(100), 0.1);                      // warm-up end
  EXPECT_NEAR(lr.at(600), 0.1 * 0.5 * 0.5, 1e-15);        // middle of decay
  EXPECT_NEAR(lr.at(1099), 0.1 * std::pow(1.0 / 1000, 2), 1e-15);  // last step
}

TEST(LrSchedule, Cosine) {
  ScheduleConfig s;
  s.name = "cosine";
  s.warmup_steps = 10;
  s.min_lr = 0.001;
  LrSchedule lr(s, 0.1, 110);
  EXPECT_DOUBLE_EQ(lr.at(10), 0.1);
  EXPECT_NEAR(lr.at(60), 0.001 + 0.099 * 0.5, 1e-15);
  EXPECT_NEAR(lr.at(109), 0.001 + 0.099 * (1 + std::cos(M_PI * 99.0 / 100.0)) / 2, 1e-15);
}

TEST(LrSchedule, CosineWarmRestarts) {
  ScheduleConfig s;
  s.name = "cosine_restarts";
  s.restart_period = 10;
  s.restart_mult = 2.0;
  LrSchedule lr(s, 1.0, 1000);
  EXPECT_DOUBLE_EQ(lr.at(0), 1.0);
  EXPECT_NEAR(lr.at(5), 0.5, 1e-15);
  EXPECT_DOUBLE_EQ(lr.at(10), 1.0);  // restart, next period is 20 steps
  EXPECT_NEAR(lr.at(20), 0.5, 1e-15);
  EXPECT_DOUBLE_EQ(lr.at(30), 1.0);  // restart, next period 40
  EXPECT_NEAR(lr.at(40), (1 + std::cos(M_PI * 10 / 40)) / 2, 1e-15);
}
