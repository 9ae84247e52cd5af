// Verification on real-format sets: a .bin and a CSV pair list built from the same synth faces give
// the report the test computes directly from the pixels; the real small_lfw.bin loads and runs;
// the trainer evaluates eval.sets; missing images are a clear error.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "arcforge/common/error.hpp"
#include "arcforge/data/verification_set.hpp"
#include "arcforge/eval/pairs.hpp"
#include "arcforge/image/codec.hpp"
#include "train/data/synth.hpp"
#include "train/train/embed.hpp"
#include "train/train/eval_sets.hpp"
#include "train/train/trainer.hpp"

using namespace arcforge;
using namespace arcforge::train;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("arcforge_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// 40 held-out synth pairs as uint8 images [80,3,112,112] (pair i = images 2i, 2i+1) and labels.
struct SynthPairImages {
  torch::Tensor images;
  std::vector<bool> same;
};

SynthPairImages synth_pair_images() {
  data::SynthFaces faces(data::SynthOptions{50, 0, 112});
  auto pairs = data::make_heldout_pairs(40, 20, 5);
  std::vector<int64_t> ids, samples;
  SynthPairImages out;
  for (const auto& p : pairs) {
    ids.insert(ids.end(), {p.identity_a, p.identity_b});
    samples.insert(samples.end(), {p.sample_a, p.sample_b});
    out.same.push_back(p.same);
  }
  auto rgb = faces.render(torch::tensor(ids), torch::tensor(samples));
  out.images = (rgb * 255).round().clamp(0, 255).to(torch::kUInt8);
  return out;
}

std::string png_of(const torch::Tensor& chw_uint8) {
  auto hwc = chw_uint8.permute({1, 2, 0}).contiguous();
  image::Image img(112, 112, 3);
  std::memcpy(img.pixels.data(), hwc.data_ptr<uint8_t>(), img.pixels.size());
  return image::encode_png(img);
}

std::shared_ptr<nn::Backbone> small_mbf() {
  torch::manual_seed(3);
  return nn::make_backbone({"mbf", 64, 0.0});
}

// The reference: the protocol on scores computed from the pixels directly, pairs (2i, 2i+1).
eval::VerificationReport reference_report(nn::Backbone& model, const SynthPairImages& data) {
  auto input = (data.images.to(torch::kFloat) - 127.5) / 127.5;
  auto e = embed_images(model, input, true, torch::kCPU).contiguous();
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < static_cast<int64_t>(data.same.size()); ++i) pairs.emplace_back(2 * i, 2 * i + 1);
  auto scores = eval::pair_scores(e.data_ptr<float>(), e.size(0), e.size(1), pairs);
  return eval::evaluate_verification(scores, data.same);
}

void expect_same_report(const eval::VerificationReport& a, const eval::VerificationReport& b) {
  EXPECT_EQ(a.pairs, b.pairs);
  EXPECT_DOUBLE_EQ(a.accuracy, b.accuracy);
  EXPECT_DOUBLE_EQ(a.accuracy_std, b.accuracy_std);
  EXPECT_DOUBLE_EQ(a.auc, b.auc);
  EXPECT_DOUBLE_EQ(a.threshold, b.threshold);
}

}  // namespace

TEST(EvalSets, BinAndCsvOfTheSameFacesMatchTheDirectComputation) {
  at::set_num_threads(2);
  const auto data = synth_pair_images();
  const std::string dir = temp_dir("evalsets");
  data::VerificationSet bin;
  std::ofstream csv(dir + "/pairs.csv");
  csv << "file_x,file_y,same\n";
  for (int64_t i = 0; i < data.images.size(0); ++i) {
    bin.images.push_back(png_of(data.images[i]));
    std::ofstream(dir + "/face" + std::to_string(i) + ".png", std::ios::binary) << bin.images.back();
  }
  for (size_t i = 0; i < data.same.size(); ++i)
    csv << "face" << 2 * i << ".png,face" << 2 * i + 1 << ".png," << (data.same[i] ? 1 : 0) << "\n";
  csv.close();
  bin.issame = data.same;
  data::write_bin(dir + "/synthpairs.bin", bin);

  auto model = small_mbf();
  const auto expected = reference_report(*model, data);
  const EvalSet from_bin = load_eval_set(dir + "/synthpairs.bin");
  EXPECT_EQ(from_bin.name, "synthpairs");
  EXPECT_EQ(from_bin.image_count(), 80);
  // Decoding is lossless here (PNG): the network input equals the pixels' exactly.
  EXPECT_TRUE(torch::equal(eval_set_images(from_bin, 0, 80), (data.images.to(torch::kFloat) - 127.5) / 127.5));
  expect_same_report(evaluate_set(*model, from_bin, torch::kCPU), expected);

  const EvalSet from_csv = load_eval_set(dir + "/pairs.csv");
  EXPECT_EQ(from_csv.image_count(), 80);
  expect_same_report(evaluate_set(*model, from_csv, torch::kCPU, "fp32", 7), expected);  // odd batch size
  fs::remove_all(dir);
}

TEST(EvalSets, MissingImagesInAPairListAreNamed) {
  const std::string dir = temp_dir("evalsets_missing");
  std::ofstream(dir + "/pairs.csv") << "file_x,file_y,same\na.png,b.png,1\n";
  try {
    load_eval_set(dir + "/pairs.csv");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("pairs.csv"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("a.png"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(EvalSets, RealSmallLfwBinLoadsAndRuns) {
  const std::string path = std::string(ARCFORGE_SOURCE_DIR) + "/../shared/faces/insightface/small_lfw.bin";
  if (!fs::exists(path)) GTEST_SKIP() << "SKIPPED: " << path << " not found (../shared absent)";
  const EvalSet set = load_eval_set(path);
  EXPECT_EQ(set.name, "small_lfw");
  ASSERT_EQ(set.image_count(), 20);
  ASSERT_EQ(set.pairs.size(), 10u);
  auto images = eval_set_images(set, 0, 20);
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{20, 3, 112, 112}));
  EXPECT_LE(images.abs().max().item<double>(), 1.0);
  EXPECT_GT(images.std().item<double>(), 0.2);  // real photos, not blank
  auto model = small_mbf();
  auto embeddings = embed_images(*model, images, true, torch::kCPU);
  EXPECT_TRUE(torch::isfinite(embeddings).all().item<bool>());
  // Its 10 pairs are all "same": the 10-fold protocol cannot pick a threshold, and says so.
  try {
    evaluate_set(*model, set, torch::kCPU);
    FAIL() << "expected an error for a set without different pairs";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no different pairs"), std::string::npos) << e.what();
  }
}

TEST(EvalSets, TrainerEvaluatesConfiguredSets) {
  const auto data = synth_pair_images();
  const std::string dir = temp_dir("evalsets_trainer");
  data::VerificationSet bin;
  for (int64_t i = 0; i < data.images.size(0); ++i) bin.images.push_back(png_of(data.images[i]));
  bin.issame = data.same;
  data::write_bin(dir + "/heldout.bin", bin);
  auto config = parse_config("", {"model.arch=mbf", "model.embedding_size=64", "data.num_identities=50",
                                  "train.batch_size=16", "train.steps=2", "train.threads=2", "train.device=cpu",
                                  "checkpoint.dir=\"" + dir + "/run\"", "checkpoint.every=0", "eval.pairs=0",
                                  "eval.sets=[\"" + dir + "/heldout.bin\"]"});
  TrainResult result = run_training(config);
  ASSERT_EQ(result.eval_sets_after.size(), 1u);
  EXPECT_EQ(result.eval_sets_after[0].first, "heldout");
  EXPECT_EQ(result.eval_sets_after[0].second.pairs, 40);
  EXPECT_FALSE(result.eval_after.has_value());  // no synth pairs asked for
  fs::remove_all(dir);
}
