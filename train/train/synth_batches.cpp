#include "train/train/synth_batches.hpp"

#include "arcforge/common/counter_rng.hpp"

namespace arcforge::train {

SynthBatches::SynthBatches(const DataConfig& data, int64_t batch_size, uint64_t sampling_seed)
    : faces_(data::SynthOptions{data.num_identities, data.seed, 112}),
      batch_size_(batch_size),
      samples_per_identity_(data.samples_per_identity),
      sampling_seed_(sampling_seed) {}

Batch SynthBatches::batch(int64_t index, torch::Device device) {
  auto identities = torch::empty({batch_size_}, torch::kInt64);
  auto samples = torch::empty({batch_size_}, torch::kInt64);
  auto* id = identities.data_ptr<int64_t>();
  auto* sample = samples.data_ptr<int64_t>();
  const auto classes = static_cast<uint64_t>(faces_.options().num_identities);
  for (int64_t i = 0; i < batch_size_; ++i) {
    uint64_t h = hash_keys({sampling_seed_, 0x5EEDull, static_cast<uint64_t>(index),
                            static_cast<uint64_t>(i)});
    id[i] = static_cast<int64_t>(uniform_index(h, classes));
    // A finite dataset draws one of its fixed samples; otherwise every draw is a fresh sample.
    sample[i] = samples_per_identity_ > 0
                    ? static_cast<int64_t>(uniform_index(mix64(h), static_cast<uint64_t>(samples_per_identity_)))
                    : index * batch_size_ + i;
  }
  Batch b;
  b.images = data::to_network_input(faces_.render(identities, samples, device));
  b.labels = identities.to(device);
  return b;
}

}  // namespace arcforge::train
