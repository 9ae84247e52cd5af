#include "train/train/loader_batches.hpp"

#include "arcforge/common/log.hpp"
#include "train/data/pixel_levels.hpp"

namespace arcforge::train {
namespace {

data::LoaderOptions loader_options(const TrainConfig& config, torch::Device device, DataShard shard) {
  data::LoaderOptions o;
  o.rank = shard.rank;
  o.world_size = shard.world_size;
  o.batch_size = config.train.batch_size;
  o.threads = config.data.loader_threads;
  o.prefetch_batches = config.data.prefetch_batches;
  o.seed = config.train.seed;
  o.pin_memory = device.is_cuda();
  o.skip_bad = config.data.skip_bad;
  return o;
}

}  // namespace

LoaderBatches::LoaderBatches(std::shared_ptr<const data::ImageSource> source, const TrainConfig& config,
                             torch::Device device, DataShard shard)
    : loader_(std::move(source), loader_options(config, device, shard)),
      augmenter_(resolved_augment(config), config.train.seed),
      augment_(resolved_augment(config).any()),
      shard_(shard) {}

Batch LoaderBatches::batch(int64_t index, torch::Device device) {
  if (index != next_index_) loader_.seek(index);  // a resume, or a caller that skips
  data::LoadedBatch loaded = loader_.next();
  next_index_ = index + 1;
  if (loaded.index == loader_.batches_per_epoch() - 1 && loader_.bad_images() > reported_bad_) {
    log::warn(log::cat("epoch ", loaded.epoch, ": ", loader_.bad_images() - reported_bad_,
                       " undecodable images were replaced (data.skip_bad); ", loader_.bad_images(), " in total"));
    reported_bad_ = loader_.bad_images();
  }
  // uint8 crosses to the device (a quarter of the float bytes); the rest happens there.
  torch::Tensor images = data::uint8_to_unit(loaded.images.to(device, /*non_blocking=*/true));
  // Each rank draws its own augmentation parameters: global batch index * W + rank.
  if (augment_) images = augmenter_.apply(images, index * shard_.world_size + shard_.rank);
  // `images` is this function's own (fresh or augmented), so the last conversion runs in place.
  return Batch{data::to_network_input_(images), loaded.labels.to(device, /*non_blocking=*/true)};
}

}  // namespace arcforge::train
