#pragma once
// Where training batches come from. Batch k is a pure function of (configuration, k), so a resumed
// run sees exactly the batches the uninterrupted run would have seen.
#include <torch/torch.h>

#include <memory>

#include "train/train/config.hpp"

namespace arcforge::train {

struct Batch {
  torch::Tensor images;  // [B,3,112,112] float, network input ((255x-127.5)/127.5), on the device
  torch::Tensor labels;  // [B] int64 class index, on the device
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch batch(int64_t index, torch::Device device) = 0;
};

// data.dataset "synth" (rendered faces) or "synthetic" (one fixed random batch, reused every step:
// arcface_torch's SyntheticDataset, for measuring the training step alone).
std::unique_ptr<BatchSource> make_batch_source(const DataConfig& data, int64_t batch_size,
                                               uint64_t sampling_seed);

}  // namespace arcforge::train
