#pragma once
// Training batches drawn from `synth`. Batch k is a pure function of (data seed, train seed, k):
// a resumed run sees exactly the batches the uninterrupted run would have seen.
#include <torch/torch.h>

#include "train/data/synth.hpp"
#include "train/train/batch_source.hpp"
#include "train/train/config.hpp"

namespace arcforge::train {

class SynthBatches : public BatchSource {
 public:
  SynthBatches(const DataConfig& data, int64_t batch_size, uint64_t sampling_seed);
  Batch batch(int64_t index, torch::Device device) override;
  const data::SynthFaces& faces() const { return faces_; }

 private:
  data::SynthFaces faces_;
  int64_t batch_size_;
  int64_t samples_per_identity_;
  uint64_t sampling_seed_;
};

}  // namespace arcforge::train
