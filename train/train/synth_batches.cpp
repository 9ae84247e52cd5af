#include "train/train/synth_batches.hpp"

#include "arcforge/common/counter_rng.hpp"
#include "arcforge/common/error.hpp"
#include "train/data/loader.hpp"
#include "train/data/upload.hpp"

namespace arcforge::train {

SynthBatches::SynthBatches(const DataConfig& data, int64_t batch_size, uint64_t sampling_seed, DataShard shard)
    : faces_(data::SynthOptions{data.num_identities, data.seed, 112}),
      batch_size_(batch_size),
      samples_per_identity_(data.samples_per_identity),
      uint8_levels_(data.synth_uint8),
      sampling_seed_(sampling_seed),
      shard_(shard) {
  if (samples_per_identity_ > 0) {
    const int64_t images = data.num_identities * samples_per_identity_;
    const int64_t per_rank = (images + shard.world_size - 1) / shard.world_size;
    batches_per_epoch_ = per_rank / batch_size_;  // drop_last, as the loader
    if (batches_per_epoch_ == 0)
      throw ConfigError("synth: " + std::to_string(images) + " images (data.num_identities x " +
                        "data.samples_per_identity) give rank " + std::to_string(shard.rank) + " only " +
                        std::to_string(per_rank) + ", fewer than one batch of " + std::to_string(batch_size_));
  }
}

void SynthBatches::draw_endless(int64_t index, int64_t* identity, int64_t* sample) const {
  const auto classes = static_cast<uint64_t>(faces_.options().num_identities);
  for (int64_t i = 0; i < batch_size_; ++i) {
    const uint64_t h =
        hash_keys({sampling_seed_, 0x5EEDull, static_cast<uint64_t>(index), static_cast<uint64_t>(i)});
    identity[i] = static_cast<int64_t>(uniform_index(h, classes));
    sample[i] = index * batch_size_ + i;
  }
}

void SynthBatches::draw_finite(int64_t index, int64_t* identity, int64_t* sample) {
  const int64_t epoch = index / batches_per_epoch_, within = index % batches_per_epoch_;
  auto found = shards_.find(epoch);
  if (found == shards_.end()) {
    if (shards_.size() >= 2) shards_.erase(shards_.begin());  // a run only moves forward
    const int64_t images = faces_.options().num_identities * samples_per_identity_;
    found = shards_
                .emplace(epoch, data::rank_shard(data::epoch_permutation(images, sampling_seed_, epoch),
                                                 shard_.rank, shard_.world_size))
                .first;
  }
  for (int64_t i = 0; i < batch_size_; ++i) {
    const int64_t n = found->second[static_cast<size_t>(within * batch_size_ + i)];
    identity[i] = n / samples_per_identity_;
    sample[i] = n % samples_per_identity_;
  }
}

Batch SynthBatches::batch(int64_t index, torch::Device device) {
  auto identities = torch::empty({batch_size_}, torch::kInt64);
  auto samples = torch::empty({batch_size_}, torch::kInt64);
  if (samples_per_identity_ > 0) {
    draw_finite(index, identities.data_ptr<int64_t>(), samples.data_ptr<int64_t>());
  } else {
    draw_endless(index, identities.data_ptr<int64_t>(), samples.data_ptr<int64_t>());
  }
  torch::Tensor rgb = faces_.render(identities, samples, device);
  if (uint8_levels_) rgb = data::to_uint8_levels(rgb);
  Batch b;
  b.images = data::to_network_input_(rgb);  // rgb is this batch's own
  b.labels = data::upload(identities, device);
  return b;
}

}  // namespace arcforge::train
