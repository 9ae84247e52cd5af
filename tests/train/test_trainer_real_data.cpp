// The trainer on real-format datasets: a folder of images and the .rec packed from it train the
// same way (the class count comes from the data), and a run stopped and resumed mid-epoch with
// augmentation on ends bit-identical to an uninterrupted one (loader order and augmentation are
// both pure functions of the step); and a finite synth dataset packed into a .rec trains with the
// same loss curve as synth itself.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "arcforge/data/image_folder.hpp"
#include "arcforge/image/codec.hpp"
#include "train/data/image_source.hpp"
#include "train/data/synth.hpp"
#include "train/data/synth_export.hpp"
#include "train/train/synth_batches.hpp"
#include "child_process.hpp"
#include "same_weights.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/trainer.hpp"

using namespace arcforge;
using namespace arcforge::train;
using arcforge::test::expect_same_weights;
namespace fs = std::filesystem;

namespace {

// root/id00..id05/img0..7.png: synth faces, 6 identities x 8 images.
std::string make_folder(const std::string& dir) {
  const std::string root = dir + "/faces";
  data::SynthFaces faces(data::SynthOptions{6, 1, 112});
  std::vector<int64_t> ids, samples;
  for (int64_t id = 0; id < 6; ++id)
    for (int64_t s = 0; s < 8; ++s) ids.push_back(id), samples.push_back(s);
  auto rgb = (faces.render(torch::tensor(ids), torch::tensor(samples)) * 255).round().to(torch::kUInt8);
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string folder = root + "/id0" + std::to_string(ids[i]);
    fs::create_directories(folder);
    auto hwc = rgb[i].permute({1, 2, 0}).contiguous();
    image::Image img(112, 112, 3);
    std::memcpy(img.pixels.data(), hwc.data_ptr<uint8_t>(), img.pixels.size());
    image::write_png(folder + "/img" + std::to_string(samples[i]) + ".png", img);
  }
  return root;
}

TrainConfig real_config(const std::string& dataset, const std::string& path, const std::string& run, int64_t steps) {
  return parse_config("", {"model.arch=mbf", "model.embedding_size=32", "data.dataset=" + dataset,
                           "data.path=\"" + path + "\"", "data.loader_threads=2", "train.batch_size=8",
                           "train.steps=" + std::to_string(steps), "train.threads=2", "train.device=cpu",
                           "augment.preset=article", "checkpoint.dir=\"" + run + "\"", "checkpoint.every=0",
                           "eval.pairs=0", "log.every=1"});
}

}  // namespace

TEST(TrainerRealData, FolderAndRecTrainAndResumeBitIdentically) {
  const auto dir = (fs::temp_directory_path() / ("arcforge_realdata_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  const std::string root = make_folder(dir);
  data::pack_image_folder(data::scan_image_folder(root), dir + "/train.rec");

  // 48 images, batch 8: 6 batches per epoch, so 8 steps cross an epoch boundary.
  TrainResult folder = run_training(real_config("folder", root, dir + "/folder", 8));
  EXPECT_EQ(folder.steps, 8);
  TrainConfig saved;
  load_modules_from_checkpoint(folder.checkpoint, &saved);
  EXPECT_EQ(saved.data.num_identities, 6);  // from the folder, not the default
  EXPECT_EQ(saved.data.num_images, 48);

  // The .rec of the same folder: same labels, same bytes, same order -> the same weights. Its
  // batches are made ahead on a worker thread (data.make_ahead), which must change nothing.
  TrainConfig ahead = real_config("rec", dir + "/train.rec", dir + "/rec", 8);
  ahead.data.make_ahead = "on";
  TrainResult rec = run_training(ahead);
  TrainModules a = load_modules_from_checkpoint(folder.checkpoint);
  TrainModules b = load_modules_from_checkpoint(rec.checkpoint);
  expect_same_weights(*a.backbone, *b.backbone);

  // Stop after 3 steps (mid-epoch, prefetched batches in flight, batch 3 made ahead), resume to 8.
  TrainHooks stop_at_3;
  stop_at_3.after_step = [](int64_t step) { return step < 3; };
  TrainConfig stopped = real_config("rec", dir + "/train.rec", dir + "/resumed", 8);
  stopped.data.make_ahead = "on";
  run_training(stopped, "", stop_at_3);
  TrainResult resumed = run_training(real_config("rec", dir + "/train.rec", dir + "/resumed", 8),
                                     dir + "/resumed/checkpoint.pt");
  EXPECT_EQ(resumed.steps, 8);
  TrainModules c = load_modules_from_checkpoint(resumed.checkpoint);
  expect_same_weights(*b.backbone, *c.backbone);
  expect_same_weights(*b.head, *c.head);
  fs::remove_all(dir);
}

// A finite synth dataset (data.samples_per_identity) written out by synth-export and packed into a
// .rec: the loader reads the same images in the same order as synth renders them, so training on
// the .rec gives the same loss at every step and the same weights, bit for bit.
TEST(TrainerRealData, PackedSynthRecTrainsWithTheSameLossCurveAsSynth) {
  const auto dir = (fs::temp_directory_path() / ("arcforge_synthrec_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  // 12 identities x 6 images = 72, batch 8: 9 batches an epoch, so 12 steps cross into epoch 1.
  const auto exported = data::export_synth_folder(data::SynthOptions{12, 3, 112}, 6, dir + "/faces");
  EXPECT_EQ(exported.images, 72);
  const auto folder = data::scan_image_folder(dir + "/faces");
  EXPECT_EQ(folder.num_classes(), 12);
  data::pack_image_folder(folder, dir + "/synth.rec");

  const auto config = [&](std::vector<std::string> data, const std::string& run) {
    std::vector<std::string> keys = {"model.arch=mbf", "model.embedding_size=32", "train.batch_size=8",
                                     "train.steps=12", "train.threads=2", "train.device=cpu",
                                     "augment.preset=none", "checkpoint.dir=\"" + run + "\"",
                                     "checkpoint.every=0", "eval.pairs=0", "log.every=1"};
    keys.insert(keys.end(), data.begin(), data.end());
    return parse_config("", keys);
  };
  const auto losses_of = [](const TrainConfig& c) {
    std::vector<double> losses;
    TrainHooks hooks;
    hooks.on_loss = [&](int64_t, torch::Tensor& loss) { losses.push_back(loss.item<double>()); };
    const TrainResult result = run_training(c, "", hooks);
    return std::pair{losses, result.checkpoint};
  };
  const auto [synth_losses, synth_ckpt] =
      losses_of(config({"data.dataset=synth", "data.num_identities=12", "data.samples_per_identity=6",
                        "data.seed=3", "data.synth_uint8=true"},
                       dir + "/synth"));
  const auto [rec_losses, rec_ckpt] =
      losses_of(config({"data.dataset=rec", "data.path=\"" + dir + "/synth.rec\""}, dir + "/rec"));
  ASSERT_EQ(synth_losses.size(), 12u);
  ASSERT_EQ(rec_losses.size(), 12u);
  for (size_t i = 0; i < synth_losses.size(); ++i) EXPECT_EQ(synth_losses[i], rec_losses[i]) << "step " << i;
  // It trains, not just agrees: over 4 steps, not one (a batch of 8 is noisy: on an AVX2 CPU the
  // 12th batch's loss alone came out above the 1st's while steps 9-12 averaged 10% below 1-4).
  const auto mean4 = [&](size_t from) { return (rec_losses[from] + rec_losses[from + 1] + rec_losses[from + 2] + rec_losses[from + 3]) / 4; };
  EXPECT_LT(mean4(8), mean4(0));
  TrainModules a = load_modules_from_checkpoint(synth_ckpt);
  TrainModules b = load_modules_from_checkpoint(rec_ckpt);
  expect_same_weights(*a.backbone, *b.backbone);
  expect_same_weights(*a.head, *b.head);
  fs::remove_all(dir);
}

// Finite synth iterates in epochs like the loader: every image once per epoch, a new order next
// epoch, and each rank of two takes its DistributedSampler half.
TEST(TrainerRealData, FiniteSynthVisitsEveryImageOncePerEpoch) {
  DataConfig data;
  data.num_identities = 5;
  data.samples_per_identity = 4;  // 20 images, batch 4: 5 batches an epoch
  SynthBatches all(data, 4, 9);
  EXPECT_EQ(all.batches_per_epoch(), 5);
  const auto labels_of_epoch = [](SynthBatches& source, int64_t epoch) {
    std::vector<int64_t> labels;
    for (int64_t k = 0; k < source.batches_per_epoch(); ++k) {
      const auto l = source.batch(epoch * source.batches_per_epoch() + k, torch::kCPU).labels;
      labels.insert(labels.end(), l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
    }
    return labels;
  };
  auto epoch0 = labels_of_epoch(all, 0), epoch1 = labels_of_epoch(all, 1);
  EXPECT_NE(epoch0, epoch1);
  for (auto* labels : {&epoch0, &epoch1}) {
    std::vector<int64_t> count(5, 0);
    for (int64_t l : *labels) ++count[static_cast<size_t>(l)];
    EXPECT_EQ(count, std::vector<int64_t>(5, 4));
  }
  SynthBatches rank0(data, 2, 9, DataShard{0, 2}), rank1(data, 2, 9, DataShard{1, 2});
  EXPECT_EQ(rank0.batches_per_epoch(), 5);
  auto r0 = labels_of_epoch(rank0, 0), r1 = labels_of_epoch(rank1, 0);
  std::vector<int64_t> count(5, 0);
  for (auto* labels : {&r0, &r1})
    for (int64_t l : *labels) ++count[static_cast<size_t>(l)];
  EXPECT_EQ(count, std::vector<int64_t>(5, 4));
  data.samples_per_identity = 1;  // 5 images cannot fill a batch of 8
  EXPECT_THROW(SynthBatches(data, 8, 9), ConfigError);
}

// `arcforge synth-export` writes the folder that `arcforge pack` turns into a .rec, and refuses to
// write into a folder that already holds files.
TEST(TrainerRealData, SynthExportCommandWritesAPackableFolder) {
  if (!fs::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  const auto dir = (fs::temp_directory_path() / ("arcforge_synthcli_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  std::string output;
  ASSERT_EQ(arcforge::test::run_cli("synth-export " + dir + "/faces --identities 3 --samples 4 --seed 2 --json",
                                    &output),
            0)
      << output;
  const auto summary = nlohmann::json::parse(output);
  EXPECT_EQ(summary.at("images").get<int64_t>(), 12);
  EXPECT_TRUE(fs::exists(dir + "/faces/2/3.png"));
  // The pixels are the 8-bit levels of the render: identity 2, sample 3 of data seed 2.
  const auto png = image::decode_file(dir + "/faces/2/3.png");
  const auto render = data::SynthFaces(data::SynthOptions{3, 2, 112})
                          .render(torch::full({1}, 2, torch::kInt64), torch::full({1}, 3, torch::kInt64));
  const auto expected = (render[0] * 255).round().to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  EXPECT_EQ(std::memcmp(png.pixels.data(), expected.data_ptr<uint8_t>(), png.pixels.size()), 0);
  ASSERT_EQ(arcforge::test::run_cli("pack " + dir + "/faces " + dir + "/synth.rec", &output), 0) << output;
  EXPECT_EQ(data::open_image_source(dir + "/synth.rec")->size(), 12);
  EXPECT_EQ(arcforge::test::run_cli("synth-export " + dir + "/faces --identities 3 --samples 4", &output), 1);
  EXPECT_NE(output.find(dir + "/faces"), std::string::npos) << output;
  EXPECT_NE(output.find("not empty"), std::string::npos) << output;
  fs::remove_all(dir);
}
