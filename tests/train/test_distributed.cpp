// Multi-process training on c10d: the launcher's environment, the class split, Partial FC against
// the plain head and an independent double-precision softmax, the sampling's positives, and real
// 2-process Gloo runs (same weights as one process, a killed rank fails the other quickly).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <algorithm>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "child_process.hpp"
#include "same_weights.hpp"
#include "train/dist/collectives.hpp"
#include "train/dist/dist_env.hpp"
#include "train/dist/local_launcher.hpp"
#include "train/dist/partial_fc.hpp"
#include "train/dist/reshard.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/optimizer.hpp"
#include "train/train/trainer.hpp"

using namespace arcforge;
using namespace arcforge::train;
using arcforge::test::spawn;
using arcforge::test::wait_exit;
namespace fs = std::filesystem;

namespace {

dist::DistEnv env_of(const std::map<std::string, std::string>& vars) {
  return dist::dist_env_from([&](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

// max |a - b| / max |b|
double max_relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

}  // namespace

TEST(DistEnv, ReadsEachLaunchersConvention) {
  auto single = env_of({});
  EXPECT_FALSE(single.distributed());
  EXPECT_EQ(single.launcher, "single");

  auto torchrun = env_of({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"},
                          {"MASTER_ADDR", "10.0.0.2"}, {"MASTER_PORT", "23456"}});
  EXPECT_EQ(torchrun.launcher, "torchrun");
  EXPECT_EQ(torchrun.rank, 3);
  EXPECT_EQ(torchrun.world_size, 8);
  EXPECT_EQ(torchrun.local_rank, 1);
  EXPECT_EQ(torchrun.master_addr, "10.0.0.2");
  EXPECT_EQ(torchrun.master_port, 23456);

  auto slurm = env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "5"},
                       {"MASTER_ADDR", "node001"}});
  EXPECT_EQ(slurm.launcher, "slurm");
  EXPECT_EQ(slurm.rank, 5);
  EXPECT_EQ(slurm.world_size, 16);
  EXPECT_EQ(slurm.master_addr, "node001");
  EXPECT_EQ(slurm.master_port, 29500);

  auto mpi = env_of({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                     {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  EXPECT_EQ(mpi.launcher, "mpi");
  EXPECT_EQ(mpi.local_rank, 1);
  // torchrun's variables win over the scheduler's when both are present (torchrun under SLURM).
  EXPECT_EQ(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "7"}, {"SLURM_NTASKS", "9"}}).world_size, 2);
}

TEST(DistEnv, RejectsMalformedVariablesByName) {
  auto message = [](const std::map<std::string, std::string>& vars) {
    try {
      env_of(vars);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("RANK='2'"), std::string::npos);
  EXPECT_NE(message({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "0"}}).find("WORLD_SIZE"), std::string::npos);
  EXPECT_NE(message({{"MASTER_PORT", "70000"}}).find("MASTER_PORT"), std::string::npos);
}

TEST(PartialFC, ClassShardsAsInsightFace) {
  const auto a = dist::class_shard(10, 0, 3), b = dist::class_shard(10, 1, 3), c = dist::class_shard(10, 2, 3);
  EXPECT_EQ(a.start, 0);
  EXPECT_EQ(a.count, 4);
  EXPECT_EQ(b.start, 4);
  EXPECT_EQ(b.count, 3);
  EXPECT_EQ(c.start, 7);
  EXPECT_EQ(c.count, 3);
  EXPECT_THROW(dist::class_shard(2, 0, 3), ConfigError);
}

// The cross-entropy over columns, against a plain double-precision softmax written out here.
TEST(PartialFC, DistributedCrossEntropyMatchesDoublePrecision) {
  torch::manual_seed(3);
  auto world = dist::single_process_collectives();
  const int64_t n = 6, k = 9;
  for (double eps : {0.0, 0.1}) {
    torch::Tensor logits = (torch::randn({n, k}) * 8).requires_grad_(true);
    torch::Tensor labels = torch::randint(k, {n}, torch::kLong);
    torch::Tensor loss = dist::distributed_cross_entropy(logits, labels, eps, *world);
    loss.backward();
    auto x = logits.detach().to(torch::kDouble);
    double expected = 0;
    std::vector<double> grad(static_cast<size_t>(n * k));
    for (int64_t i = 0; i < n; ++i) {
      double m = -1e300;
      for (int64_t j = 0; j < k; ++j) m = std::max(m, x[i][j].item<double>());
      double z = 0;
      for (int64_t j = 0; j < k; ++j) z += std::exp(x[i][j].item<double>() - m);
      const int64_t y = labels[i].item<int64_t>();
      for (int64_t j = 0; j < k; ++j) {
        const double log_p = x[i][j].item<double>() - m - std::log(z);
        const double q = (j == y ? 1 - eps : 0) + eps / k;
        expected -= q * log_p / n;
        grad[static_cast<size_t>(i * k + j)] = (std::exp(log_p) - q) / n;
      }
    }
    EXPECT_NEAR(loss.item<double>(), expected, 1e-5 * std::abs(expected)) << "eps " << eps;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < k; ++j)
        EXPECT_NEAR(logits.grad()[i][j].item<double>(), grad[static_cast<size_t>(i * k + j)], 1e-6);
  }
}

// One rank, every centre: Partial FC is the ordinary head (same loss, same gradients).
TEST(PartialFC, SampleRateOneEqualsFullSoftmax) {
  torch::manual_seed(11);
  auto world = dist::single_process_collectives();
  const int64_t n = 12, d = 16, c = 30;
  for (const char* preset : {"arcface", "cosface", "dynamic", "adaface"}) {
    for (double eps : {0.0, 0.1}) {
      torch::Tensor weight = (torch::randn({c, d}) * 0.1).requires_grad_(true);
      torch::Tensor embeddings = torch::randn({n, d}).requires_grad_(true);
      torch::Tensor labels = torch::randint(c, {n}, torch::kLong);
      nn::Margin margin_a(nn::margin_preset(preset)), margin_b(nn::margin_preset(preset));

      dist::PartialFC pfc(dist::class_shard(c, 0, 1), 1.0, world);
      torch::Tensor loss_a = pfc.forward(weight, embeddings, labels, *margin_a, eps).loss;
      loss_a.backward();
      auto grad_w = weight.grad().clone(), grad_e = embeddings.grad().clone();
      weight.mutable_grad().reset();
      embeddings.mutable_grad().reset();

      torch::Tensor logits = margin_b->forward(nn::normalized_cosines(embeddings, weight), labels,
                                               embeddings.detach().norm(2, 1));
      torch::Tensor loss_b = nn::margin_cross_entropy(logits, labels, eps);
      loss_b.backward();
      EXPECT_NEAR(loss_a.item<double>(), loss_b.item<double>(), 1e-5) << preset << " eps " << eps;
      EXPECT_LT(max_relative_difference(grad_w, weight.grad()), 1e-5) << preset;
      EXPECT_LT(max_relative_difference(grad_e, embeddings.grad()), 1e-5) << preset;
    }
  }
}

TEST(PartialFC, SampledCentresAlwaysHoldEveryPositive) {
  torch::manual_seed(5);
  auto world = dist::single_process_collectives();
  nn::Margin margin(nn::margin_preset("arcface"));
  const int64_t d = 8;
  // 1000 classes at 0.1: 100 centres, the batch's positives among them.
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t c = 1000;
    torch::Tensor weight = torch::randn({c, d}).requires_grad_(true);
    torch::Tensor labels = torch::randint(c, {64}, torch::kLong);
    dist::PartialFC pfc(dist::class_shard(c, 0, 1), 0.1, world);
    auto out = pfc.forward(weight, torch::randn({64, d}), labels, *margin, 0.0);
    ASSERT_EQ(out.sampled.size(0), 100);
    EXPECT_TRUE(out.sampled.slice(0, 1).gt(out.sampled.slice(0, 0, -1)).all().item<bool>());  // ascending, unique
    std::set<int64_t> kept;
    for (int64_t i = 0; i < out.sampled.size(0); ++i) kept.insert(out.sampled[i].item<int64_t>());
    for (int64_t i = 0; i < 64; ++i) {
      ASSERT_TRUE(kept.count(labels[i].item<int64_t>())) << "positive " << labels[i].item<int64_t>() << " not sampled";
      // The remapped label points at the row of the same class.
      EXPECT_EQ(out.sampled[out.local_labels[i].item<int64_t>()].item<int64_t>(), labels[i].item<int64_t>());
    }
    out.loss.backward();
    // Only sampled centres receive a gradient.
    torch::Tensor touched = weight.grad().abs().sum(1).gt(0);
    EXPECT_EQ(touched.sum().item<int64_t>(), 100);
  }
  // More positives than the sample size: all positives, nothing else (arcface_torch's rule).
  torch::Tensor weight = torch::randn({100, d});
  torch::Tensor labels = torch::arange(50, torch::kLong);
  dist::PartialFC small(dist::class_shard(100, 0, 1), 0.1, world);
  auto out = small.forward(weight, torch::randn({50, d}), labels, *margin, 0.0);
  EXPECT_TRUE(out.sampled.equal(labels));
}

// The draw itself, recomputed here, on a shard that holds only some of the batch's classes: the
// same uniform priorities, 2 for the distinct positives of this shard, the top num_sample in
// ascending order (arcface_torch's rule, which finds the positives with unique()). Both paths: a
// global batch no larger than num_sample (nothing read back), and a larger one.
TEST(PartialFC, SampledRowsAreThePositivesOfTheShardThenTheTopOfTheDraw) {
  const int64_t count = 500;  // this shard's rows; labels run over 1000 classes, half elsewhere
  for (int64_t batch : {64, 160}) {
    for (int trial = 0; trial < 4; ++trial) {
      torch::manual_seed(200 + trial);
      torch::Tensor global = torch::randint(1000, {batch}, torch::kLong);
      global[1] = global[0];  // a repeated positive
      const torch::Tensor in_shard = global.lt(count);
      const torch::Tensor local = torch::where(in_shard, global, torch::full_like(global, -1));
      const int64_t num_sample = 100;
      const torch::Tensor sampled = dist::sample_centres(local, in_shard, count, num_sample);
      torch::manual_seed(200 + trial);
      torch::randint(1000, {batch}, torch::kLong);  // the labels' draw, then the priorities'
      const torch::Tensor priority = torch::rand({count});
      std::set<int64_t> positives;
      for (int64_t i = 0; i < batch; ++i)
        if (global[i].item<int64_t>() < count) positives.insert(global[i].item<int64_t>());
      std::vector<std::pair<float, int64_t>> ranked;
      for (int64_t k = 0; k < count; ++k) ranked.emplace_back(positives.count(k) ? 2.0f : priority[k].item<float>(), k);
      std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      std::vector<int64_t> want;
      if (static_cast<int64_t>(positives.size()) >= num_sample) {
        want.assign(positives.begin(), positives.end());
      } else {
        for (int64_t k = 0; k < num_sample; ++k) want.push_back(ranked[k].second);
        std::sort(want.begin(), want.end());
      }
      ASSERT_EQ(sampled.size(0), static_cast<int64_t>(want.size())) << "batch " << batch << " trial " << trial;
      for (size_t k = 0; k < want.size(); ++k)
        EXPECT_EQ(sampled[static_cast<int64_t>(k)].item<int64_t>(), want[k]) << "batch " << batch << " row " << k;
    }
  }
  // Exactly as many distinct positives as num_sample: the positives and nothing else.
  const torch::Tensor labels = torch::randperm(500, torch::kLong).narrow(0, 0, 64);
  const torch::Tensor sampled = dist::sample_centres(labels, torch::ones({64}, torch::kBool), 500, 64);
  EXPECT_TRUE(sampled.equal(std::get<0>(labels.sort())));
}

// A head above 2^26 values is not drawn whole, yet the shards of any world size are cuts of the
// single-process initialisation (blocks of 65536 classes, here cut across a block boundary).
TEST(PartialFC, LargeHeadShardsAreCutsOfTheWholeInitialisation) {
  TrainConfig config = parse_config("", {"model.arch=mbf", "model.embedding_size=512", "data.num_identities=140000"});
  ASSERT_GT(config.data.num_identities * config.model.embedding_size, int64_t{1} << 26);
  const torch::Tensor whole = make_modules(config).head->weight;
  EXPECT_NEAR(whole.std().item<double>(), 0.01, 1e-4);
  for (int world : {2, 3}) {
    std::vector<torch::Tensor> shards;
    for (int rank = 0; rank < world; ++rank) {
      const auto classes = dist::class_shard(config.data.num_identities, rank, world);
      shards.push_back(make_modules(config, {rank, world, classes.start, classes.count}).head->weight);
    }
    EXPECT_TRUE(torch::cat(shards, 0).equal(whole)) << world << " ranks";
  }
  TrainConfig other_seed = config;
  other_seed.train.seed += 1;
  EXPECT_FALSE(make_modules(other_seed).head->weight.equal(whole));
}

// ---- real processes ------------------------------------------------------------------------------
namespace {

// One thread per process on both sides: oneDNN picks its algorithms by thread count, and a
// different summation order, amplified through train-mode BatchNorm at batch 6, would hide the
// comparison. The learning rate is low for the same reason.
std::vector<std::string> train_args(const std::string& dir, int64_t batch, int64_t accumulation,
                                    int64_t steps = 2) {
  return {ARCFORGE_CLI, "train", "--arch", "mbf", "--steps", std::to_string(steps), "--batch", std::to_string(batch),
          "--threads", "1", "--set", "optimizer.lr=0.02",
          "--device", "cpu", "--out", dir, "--json",
          "--set", "model.embedding_size=32", "--set", "data.num_identities=21",
          "--set", "train.grad_accumulation=" + std::to_string(accumulation),
          "--set", "eval.pairs=0", "--set", "checkpoint.every=0", "--set", "log.every=1",
          "--set", "dist.timeout_s=60", "--set", "dist.bucket_mb=0.25"};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

fs::path scratch(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("arcforge_dist_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

// Two ranks with batch B take the same steps as one process with gradient accumulation over the
// two rank batches (batch 2B split the same way: BatchNorm sees the same per-rank statistics), so
// the weights agree: backbone all-reduced, head sharded 11 + 10 rows against 21.
TEST(DistributedTraining, TwoRanksMatchOneProcessWithTheDoubledBatch) {
  if (!dist::multi_process_supported()) GTEST_SKIP() << "built without c10d Gloo";
  auto dir = scratch("equal");
  const std::string one = (dir / "one").string(), two = (dir / "two").string();
  auto single = train_args(one, 6, 2);
  ASSERT_EQ(wait_exit(spawn(single, {}, (dir / "one.out").string(), (dir / "one.err").string())), 0)
      << slurp((dir / "one.err").string());
  auto ranks = train_args(two, 6, 1);
  ranks.insert(ranks.end(), {"--nproc", "2"});
  ASSERT_EQ(wait_exit(spawn(ranks, {}, (dir / "two.out").string(), (dir / "two.err").string())), 0)
      << slurp((dir / "two.err").string());

  // Only rank 0 reports; its images/s counts both ranks' batches.
  auto report = nlohmann::json::parse(slurp((dir / "two.out").string()));
  EXPECT_EQ(report["steps"], 2);

  TrainModules ref = load_modules_from_checkpoint(latest_checkpoint_path(one));
  TrainModules r0 = load_modules_from_checkpoint(latest_checkpoint_path(two));
  TrainModules r1 = load_modules_from_checkpoint(checkpoint_path_for_rank(latest_checkpoint_path(two), 1));
  EXPECT_EQ(r0.head->weight.size(0), 11);
  EXPECT_EQ(r1.head->weight.size(0), 10);
  // Compared as training updates (weights minus the common initialisation), over all weights at
  // once: a parameter that barely moved would make a per-tensor ratio meaningless.
  TrainModules init = make_modules(read_checkpoint_config(latest_checkpoint_path(one)));
  auto flat = [](TrainModules& m) {
    std::vector<torch::Tensor> parts;
    for (const auto& p : m.backbone->parameters()) parts.push_back(p.detach().contiguous().view(-1));
    return torch::cat(parts);
  };
  const torch::Tensor start = flat(init), ref_update = flat(ref) - start;
  ASSERT_TRUE(flat(r0).equal(flat(r1))) << "the ranks' backbones disagree";
  EXPECT_GT(ref_update.abs().max().item<double>(), 1e-3);  // training moved the weights
  // Float reordering (all-reduce, the sharded softmax) differs by ~2e-5 of the update after one
  // step; the second step's train-mode BatchNorm over 6 images amplifies it to ~1e-3 (9.5e-4 with
  // ATen's PReLU, 1.0e-3 with arcforge's, 2026-11-29). A wrong reduction differs by O(1).
  EXPECT_LT(max_relative_difference(flat(r0) - start, ref_update), 5e-3) << "backbone differs from one process";
  torch::Tensor head = torch::cat({r0.head->weight, r1.head->weight}, 0);
  EXPECT_LT(max_relative_difference(head - init.head->weight, ref.head->weight - init.head->weight), 1e-3);

  // The all-reduce overlapped backward: buckets started from gradient hooks.
  std::ifstream metrics(two + "/metrics.jsonl");
  bool seen = false;
  for (std::string line; std::getline(metrics, line);) {
    auto record = nlohmann::json::parse(line);
    if (!record.contains("allreduce_buckets")) continue;
    seen = true;
    EXPECT_GT(record["allreduce_buckets"].get<int>(), 2);
    EXPECT_GE(record["buckets_started_during_backward"].get<int>(), 1);
  }
  EXPECT_TRUE(seen);

  // A checkpoint of 2 ranks does not resume in 1 process: the error says so; 2 ranks load their
  // own shards (the run is complete, so the resumed run has no step left to take).
  auto resume = train_args(two, 6, 1);
  resume.insert(resume.end(), {"--resume", latest_checkpoint_path(two)});
  EXPECT_EQ(wait_exit(spawn(resume, {}, (dir / "r.out").string(), (dir / "r.err").string())), 1);
  EXPECT_NE(slurp((dir / "r.err").string()).find("written by 2 process(es)"), std::string::npos)
      << slurp((dir / "r.err").string());
  resume.insert(resume.end(), {"--nproc", "2"});
  EXPECT_EQ(wait_exit(spawn(resume, {}, (dir / "r.out").string(), (dir / "r.err").string())), 0)
      << slurp((dir / "r.err").string());
  EXPECT_EQ(nlohmann::json::parse(slurp((dir / "r.out").string()))["steps"], 2);

  // reshard 2 -> 1: the whole head and its momentum in class order, rank 0's backbone; and
  // 2 -> 3 -> 1 gives bit-identical files' tensors; the 1-process checkpoint resumes in 1 process.
  const std::string as_one = (dir / "as_one").string(), as_three = (dir / "as_three").string(),
                    back = (dir / "back").string();
  ASSERT_EQ(dist::reshard_checkpoint(latest_checkpoint_path(two), 1, as_one).size(), 1u);
  ASSERT_EQ(dist::reshard_checkpoint(latest_checkpoint_path(two), 3, as_three).size(), 3u);
  dist::reshard_checkpoint(latest_checkpoint_path(as_three), 1, back);
  TrainConfig config = read_checkpoint_config(latest_checkpoint_path(as_one));
  EXPECT_EQ(config.checkpoint.dir, as_one);
  auto with_optimizer = [&](const std::string& file, TrainModules& m) {
    auto optimizer = make_optimizer(config.optimizer, m);
    load_checkpoint(file, m, optimizer.get());
    return optimizer;
  };
  TrainModules one_m = make_modules(config), back_m = make_modules(config);
  TrainModules s0 = make_modules(config, read_checkpoint_shard(latest_checkpoint_path(two)));
  TrainModules s1 = make_modules(config, read_checkpoint_shard(checkpoint_path_for_rank(latest_checkpoint_path(two), 1)));
  auto one_opt = with_optimizer(latest_checkpoint_path(as_one), one_m);
  auto back_opt = with_optimizer(latest_checkpoint_path(back), back_m);
  auto s0_opt = with_optimizer(latest_checkpoint_path(two), s0);
  auto s1_opt = with_optimizer(checkpoint_path_for_rank(latest_checkpoint_path(two), 1), s1);
  EXPECT_TRUE(one_m.head->weight.equal(torch::cat({s0.head->weight, s1.head->weight}, 0)));
  EXPECT_TRUE(flat(one_m).equal(flat(s0)));
  auto momentum = [](torch::optim::Optimizer& o, const torch::Tensor& p) {
    auto* state = dynamic_cast<torch::optim::SGDParamState*>(optimizer_state(o, p));
    return state ? state->momentum_buffer() : torch::Tensor();
  };
  ASSERT_TRUE(momentum(*one_opt, one_m.head->weight).defined());
  EXPECT_TRUE(momentum(*one_opt, one_m.head->weight)
                  .equal(torch::cat({momentum(*s0_opt, s0.head->weight), momentum(*s1_opt, s1.head->weight)}, 0)));
  EXPECT_TRUE(momentum(*one_opt, one_m.backbone->parameters()[0]).equal(momentum(*s0_opt, s0.backbone->parameters()[0])));
  EXPECT_TRUE(back_m.head->weight.equal(one_m.head->weight));
  EXPECT_TRUE(momentum(*back_opt, back_m.head->weight).equal(momentum(*one_opt, one_m.head->weight)));
  EXPECT_EQ(read_checkpoint_shard(checkpoint_path_for_rank(latest_checkpoint_path(as_three), 2)).count, 7);
  auto resume_one = train_args(as_one, 6, 1);
  resume_one.insert(resume_one.end(), {"--resume", latest_checkpoint_path(as_one)});
  EXPECT_EQ(wait_exit(spawn(resume_one, {}, (dir / "r.out").string(), (dir / "r.err").string())), 0)
      << slurp((dir / "r.err").string());
  fs::remove_all(dir);
}

// Two ranks SIGKILLed together with their launcher at some point after the first checkpoint
// (possibly while saving) and resumed with --nproc 2 end bit-identical to an uninterrupted run:
// the backbone, both head shards (sampled Partial FC, so the sampling RNG resumes too).
TEST(DistributedTraining, KilledMidRunTwoRanksResumeBitIdentically) {
  if (!dist::multi_process_supported()) GTEST_SKIP() << "built without c10d Gloo";
  auto dir = scratch("kill");
  const std::string straight = (dir / "straight").string(), killed = (dir / "killed").string();
  auto args = [](const std::string& out) {
    auto a = train_args(out, 6, 1, 10);
    a.insert(a.end(), {"--nproc", "2", "--set", "checkpoint.every=2", "--set", "dist.sample_rate=0.5"});
    return a;
  };
  ASSERT_EQ(wait_exit(spawn(args(straight), {}, (dir / "s.out").string(), (dir / "s.err").string())), 0)
      << slurp((dir / "s.err").string());

  // Rank 1 alone killed between the two renames of its last save (step 10): it holds only its
  // previous file (step 8), so both ranks go back to step 8 and end bit-identical again.
  const std::string mid_save = (dir / "mid_save").string();
  fs::copy(straight, mid_save, fs::copy_options::recursive);
  const std::string rank1 = checkpoint_path_for_rank(latest_checkpoint_path(mid_save), 1);
  EXPECT_EQ(previous_checkpoint_path(rank1), checkpoint_path_for_rank(previous_checkpoint_path(latest_checkpoint_path(mid_save)), 1));
  ASSERT_EQ(read_checkpoint_step(previous_checkpoint_path(rank1)), 8);
  fs::rename(rank1, rank1 + ".next");
  // reshard takes the step both ranks hold too: 2 -> 1 of this equals 2 -> 1 of the straight run's
  // previous files (step 8); with no common step it refuses rather than splice two states.
  const std::string one_mid = (dir / "one_mid").string(), one_prev = (dir / "one_prev").string();
  dist::reshard_checkpoint(latest_checkpoint_path(mid_save), 1, one_mid);
  dist::reshard_checkpoint(previous_checkpoint_path(latest_checkpoint_path(straight)), 1, one_prev);
  EXPECT_EQ(read_checkpoint_step(latest_checkpoint_path(one_mid)), 8);
  {
    TrainModules a = load_modules_from_checkpoint(latest_checkpoint_path(one_prev));
    TrainModules b = load_modules_from_checkpoint(latest_checkpoint_path(one_mid));
    arcforge::test::expect_same_model(a, b, "resharded mid-save");
  }
  // Rank 1 with no file at all (killed before its first save): every rank fails, naming the
  // cause, instead of rank 0 waiting on the all-reduce for rank 1 to vanish.
  const std::string unsaved = (dir / "unsaved").string();
  fs::copy(straight, unsaved, fs::copy_options::recursive);
  fs::remove(checkpoint_path_for_rank(latest_checkpoint_path(unsaved), 1));
  fs::remove(previous_checkpoint_path(checkpoint_path_for_rank(latest_checkpoint_path(unsaved), 1)));
  auto resume_unsaved = args(unsaved);
  resume_unsaved.insert(resume_unsaved.end(), {"--resume", "latest"});
  EXPECT_EQ(wait_exit(spawn(resume_unsaved, {}, (dir / "u.out").string(), (dir / "u.err").string())), 1);
  const std::string unsaved_err = slurp((dir / "u.err").string());
  EXPECT_NE(unsaved_err.find("rank 1 has no checkpoint to resume from"), std::string::npos) << unsaved_err;
  EXPECT_EQ(unsaved_err.find("all-reduce failed"), std::string::npos) << unsaved_err;

  const std::string apart = (dir / "apart").string();
  fs::copy(straight, apart, fs::copy_options::recursive);
  fs::remove(previous_checkpoint_path(latest_checkpoint_path(apart)));             // rank 0: step 10 only
  fs::remove(checkpoint_path_for_rank(latest_checkpoint_path(apart), 1));          // rank 1: step 8 only
  try {
    dist::reshard_checkpoint(latest_checkpoint_path(apart), 1, (dir / "never").string());
    ADD_FAILURE() << "resharded ranks of different steps";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("share no step (rank 0: 10; rank 1: 8)"), std::string::npos) << e.what();
  }
  auto resume_mid_save = args(mid_save);
  resume_mid_save.insert(resume_mid_save.end(), {"--resume", "latest"});
  ASSERT_EQ(wait_exit(spawn(resume_mid_save, {}, (dir / "m.out").string(), (dir / "m.err").string())), 0)
      << slurp((dir / "m.err").string());
  EXPECT_NE(slurp((dir / "m.err").string()).find("resuming from"), std::string::npos);
  for (int rank : {0, 1}) {
    TrainModules a = load_modules_from_checkpoint(checkpoint_path_for_rank(latest_checkpoint_path(straight), rank));
    TrainModules b = load_modules_from_checkpoint(checkpoint_path_for_rank(latest_checkpoint_path(mid_save), rank));
    arcforge::test::expect_same_model(a, b, "mid-save rank " + std::to_string(rank));
  }

  const pid_t launcher = spawn(args(killed), {}, (dir / "k.out").string(), (dir / "k.err").string(), true);
  const std::string latest = latest_checkpoint_path(killed);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  // Both ranks must hold a checkpoint (current or previous): the ranks save independently, so
  // rank 1's file can appear before rank 0's (CI saw exactly that under load).
  const auto every_rank_saved = [&] {
    for (int rank : {0, 1})
      if (!fs::exists(existing_checkpoint(checkpoint_path_for_rank(latest, rank)))) return false;
    return true;
  };
  while (!every_rank_saved() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(every_rank_saved()) << slurp((dir / "k.err").string());
  kill(-launcher, SIGKILL);
  ASSERT_EQ(wait_exit(launcher), -SIGKILL);
  const int64_t at_kill = read_checkpoint_step(existing_checkpoint(latest));
  EXPECT_LT(at_kill, 10) << "the run finished before it could be killed";

  auto resume = args(killed);
  resume.insert(resume.end(), {"--resume", "latest"});
  ASSERT_EQ(wait_exit(spawn(resume, {}, (dir / "r.out").string(), (dir / "r.err").string())), 0)
      << slurp((dir / "r.err").string());
  EXPECT_EQ(nlohmann::json::parse(slurp((dir / "r.out").string()))["steps"], 10);
  for (int rank : {0, 1}) {
    TrainModules a = load_modules_from_checkpoint(checkpoint_path_for_rank(latest_checkpoint_path(straight), rank));
    TrainModules b = load_modules_from_checkpoint(checkpoint_path_for_rank(latest, rank));
    arcforge::test::expect_same_model(a, b, "rank " + std::to_string(rank));
  }
  fs::remove_all(dir);
}

// Sampled Partial FC and fp16 gradient compression over two ranks train to a finite loss. The run
// is one epoch of 24 images: with 2 ranks of batch 6 that is 2 steps (arcface_torch's
// num_image // (batch_size * world_size)), not the 4 one process would take.
TEST(DistributedTraining, SampledPartialFCWithFp16Compression) {
  if (!dist::multi_process_supported()) GTEST_SKIP() << "built without c10d Gloo";
  auto dir = scratch("sampled");
  auto args = train_args((dir / "run").string(), 6, 1, /*steps=*/0);  // 0: no --steps given
  args.insert(args.end(), {"--nproc", "2", "--set", "dist.sample_rate=0.3", "--set", "dist.fp16_compress=true",
                           "--set", "train.steps=0", "--set", "train.epochs=1", "--set", "data.num_images=24"});
  ASSERT_EQ(wait_exit(spawn(args, {}, (dir / "out").string(), (dir / "err").string())), 0)
      << slurp((dir / "err").string());
  auto report = nlohmann::json::parse(slurp((dir / "out").string()));
  EXPECT_TRUE(std::isfinite(report["final_loss"].get<double>()));
  EXPECT_GT(report["final_loss"].get<double>(), 0);
  EXPECT_EQ(report["steps"].get<int64_t>(), 2);
  fs::remove_all(dir);
}

// A rank that dies makes the other fail with a message naming its rank and the collective,
// within the configured timeout, instead of hanging.
TEST(DistributedTraining, AKilledRankFailsTheOtherQuickly) {
  if (!dist::multi_process_supported()) GTEST_SKIP() << "built without c10d Gloo";
  auto dir = scratch("killed");
  auto args = train_args((dir / "run").string(), 6, 1, 100000);
  args.insert(args.end(), {"--set", "dist.timeout_s=20"});
  const std::string port = std::to_string(dist::free_local_port());
  auto env = [&](int rank) {
    return std::map<std::string, std::string>{{"RANK", std::to_string(rank)}, {"WORLD_SIZE", "2"},
                                              {"LOCAL_RANK", std::to_string(rank)},
                                              {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}};
  };
  pid_t r0 = spawn(args, env(0), (dir / "r0.out").string(), (dir / "r0.err").string());
  pid_t r1 = spawn(args, env(1), (dir / "r1.out").string(), (dir / "r1.err").string());
  // Kill rank 1 once training runs (rank 0's metrics show a step).
  const auto metrics = dir / "run" / "metrics.jsonl";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (std::chrono::steady_clock::now() < deadline && waitpid(r0, nullptr, WNOHANG) == 0 &&
         (!fs::exists(metrics) || slurp(metrics.string()).find("\"loss\"") == std::string::npos))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(fs::exists(metrics)) << slurp((dir / "r0.err").string());
  kill(r1, SIGKILL);
  wait_exit(r1);
  const auto killed_at = std::chrono::steady_clock::now();
  // Bounded: a watchdog kills rank 0 if it is still there after 90 s (and the test then fails).
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 900 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!done) kill(r0, SIGKILL);
  });
  const int code = wait_exit(r0);
  done = true;
  watchdog.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_EQ(code, 1) << slurp((dir / "r0.err").string());
  EXPECT_LT(seconds, 60.0);
  const std::string err = slurp((dir / "r0.err").string());
  EXPECT_NE(err.find("rank 0 of 2"), std::string::npos) << err;
  EXPECT_NE(err.find("failed"), std::string::npos) << err;
  fs::remove_all(dir);
}
