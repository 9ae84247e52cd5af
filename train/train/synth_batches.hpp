#pragma once
// Training batches drawn from `synth`. Batch k is a pure function of (data seed, train seed, k):
// a resumed run sees exactly the batches the uninterrupted run would have seen.
//
// Two modes, by data.samples_per_identity:
//   0      every draw is a fresh render: batch k's sample i is a hashed identity with the never
//          repeated sample number k*B + i (an endless dataset; ranks take batches k*W + r);
//   S > 0  a finite dataset of N*S images, image n = (identity n / S, sample n % S), iterated
//          exactly as data::Loader iterates a .rec or folder: epoch_permutation, rank_shard,
//          drop_last. So a folder written by data::export_synth_folder (or its .rec) trains on the
//          same images in the same order; with data.synth_uint8 the pixels are equal too.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "train/data/synth.hpp"
#include "train/train/batch_source.hpp"
#include "train/train/config.hpp"

namespace arcforge::train {

class SynthBatches : public BatchSource {
 public:
  // Throws ConfigError when a finite dataset's rank shard holds fewer images than one batch.
  SynthBatches(const DataConfig& data, int64_t batch_size, uint64_t sampling_seed, DataShard shard = {});
  Batch batch(int64_t index, torch::Device device) override;
  const data::SynthFaces& faces() const { return faces_; }
  // Finite datasets: batches in one epoch of this rank; 0 for the endless one.
  int64_t batches_per_epoch() const { return batches_per_epoch_; }

 private:
  // Fills identities/samples of batch `index` (CPU int64, batch_size_ each).
  void draw_endless(int64_t index, int64_t* identity, int64_t* sample) const;
  void draw_finite(int64_t index, int64_t* identity, int64_t* sample);

  data::SynthFaces faces_;
  int64_t batch_size_;
  int64_t samples_per_identity_;
  bool uint8_levels_;
  uint64_t sampling_seed_;
  DataShard shard_;
  int64_t batches_per_epoch_ = 0;
  std::map<int64_t, std::vector<int64_t>> shards_;  // finite: epoch -> this rank's image numbers
};

}  // namespace arcforge::train
