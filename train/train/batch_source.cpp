#include "train/train/batch_source.hpp"

#include "arcforge/common/error.hpp"
#include "train/train/loader_batches.hpp"
#include "train/train/synth_batches.hpp"
#include "train/data/upload.hpp"

namespace arcforge::train {
namespace {

// One batch of uniform noise images and random labels, drawn once from the seeds and returned
// for every index (arcface_torch's SyntheticDataset): isolates the speed of the training step.
class FixedRandomBatch : public BatchSource {
 public:
  FixedRandomBatch(const DataConfig& data, int64_t batch_size, uint64_t sampling_seed) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(data.seed * 1000003 + sampling_seed);
    cpu_.images = torch::rand({batch_size, 3, 112, 112}, generator, torch::kFloat) * 2 - 1;
    cpu_.labels = torch::randint(data.num_identities, {batch_size}, generator, torch::kInt64);
  }
  Batch batch(int64_t, torch::Device device) override {
    if (!on_device_.images.defined() || on_device_.images.device() != device)
      on_device_ = Batch{data::upload(cpu_.images, device), data::upload(cpu_.labels, device)};
    return on_device_;
  }

 private:
  Batch cpu_, on_device_;
};

// Rank r of W takes batches r, W + r, 2W + r, ... of the single-process sequence.
class RankInterleaved : public BatchSource {
 public:
  RankInterleaved(std::unique_ptr<BatchSource> all, DataShard shard) : all_(std::move(all)), shard_(shard) {}
  Batch batch(int64_t index, torch::Device device) override {
    return all_->batch(index * shard_.world_size + shard_.rank, device);
  }

 private:
  std::unique_ptr<BatchSource> all_;
  DataShard shard_;
};

}  // namespace

std::unique_ptr<BatchSource> make_batch_source(const TrainConfig& config, torch::Device device,
                                               std::shared_ptr<const data::ImageSource> source,
                                               DataShard shard) {
  const DataConfig& data = config.data;
  const int64_t batch = config.train.batch_size;
  std::unique_ptr<BatchSource> all;
  // A finite synth dataset shards itself as the loader does; the endless one is interleaved.
  if (data.dataset == "synth" && data.samples_per_identity > 0)
    return std::make_unique<SynthBatches>(data, batch, config.train.seed, shard);
  if (data.dataset == "synth") all = std::make_unique<SynthBatches>(data, batch, config.train.seed);
  if (data.dataset == "synthetic")
    all = std::make_unique<FixedRandomBatch>(data, batch, config.train.seed + static_cast<uint64_t>(shard.rank));
  if (all) return shard.world_size == 1 ? std::move(all) : std::make_unique<RankInterleaved>(std::move(all), shard);
  if (data.dataset == "rec" || data.dataset == "folder") {
    if (!source) source = open_dataset(data);
    return std::make_unique<LoaderBatches>(std::move(source), config, device, shard);
  }
  throw ConfigError("data.dataset '" + data.dataset + "' is not one of synth, synthetic, rec, folder");
}

std::shared_ptr<const data::ImageSource> open_dataset(const DataConfig& data) {
  if (data.dataset != "rec" && data.dataset != "folder") return nullptr;
  return data::open_image_source(data.path);
}

}  // namespace arcforge::train
