// The trainer on real-format datasets: a folder of images and the .rec packed from it train the
// same way (the class count comes from the data), and a run stopped and resumed mid-epoch with
// augmentation on ends bit-identical to an uninterrupted one (loader order and augmentation are
// both pure functions of the step).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "arcforge/data/image_folder.hpp"
#include "arcforge/image/codec.hpp"
#include "train/data/synth.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/trainer.hpp"

using namespace arcforge;
using namespace arcforge::train;
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

void expect_same_weights(torch::nn::Module& a, torch::nn::Module& b) {
  auto pb = b.named_parameters();
  for (const auto& item : a.named_parameters()) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  auto bb = b.named_buffers();
  for (const auto& item : a.named_buffers()) EXPECT_TRUE(torch::equal(item.value(), bb[item.key()])) << item.key();
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

  // The .rec of the same folder: same labels, same bytes, same order -> the same weights.
  TrainResult rec = run_training(real_config("rec", dir + "/train.rec", dir + "/rec", 8));
  TrainModules a = load_modules_from_checkpoint(folder.checkpoint);
  TrainModules b = load_modules_from_checkpoint(rec.checkpoint);
  expect_same_weights(*a.backbone, *b.backbone);

  // Stop after 3 steps (mid-epoch, prefetched batches in flight), resume to 8.
  TrainHooks stop_at_3;
  stop_at_3.after_step = [](int64_t step) { return step < 3; };
  run_training(real_config("rec", dir + "/train.rec", dir + "/resumed", 8), "", stop_at_3);
  TrainResult resumed = run_training(real_config("rec", dir + "/train.rec", dir + "/resumed", 8),
                                     dir + "/resumed/checkpoint.pt");
  EXPECT_EQ(resumed.steps, 8);
  TrainModules c = load_modules_from_checkpoint(resumed.checkpoint);
  expect_same_weights(*b.backbone, *c.backbone);
  expect_same_weights(*b.head, *c.head);
  fs::remove_all(dir);
}
