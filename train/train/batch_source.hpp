#pragma once
// Where training batches come from. Batch k is a pure function of (configuration, k), so a resumed
// run sees exactly the batches the uninterrupted run would have seen.
#include <torch/torch.h>

#include <memory>

#include "train/data/image_source.hpp"
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
  // Returns once no batch is being made in the background (a CUDA graph capture must not see
  // another thread's kernels). Sources that make nothing ahead return at once.
  virtual void wait_idle() {}
};

// Which share of the data this process trains on (multi-process training).
struct DataShard {
  int rank = 0;
  int world_size = 1;
};

// data.dataset "synth" (rendered faces), "synthetic" (one fixed random batch, reused every step:
// arcface_torch's SyntheticDataset, for measuring the training step alone), or "rec"/"folder"
// (a real dataset through the loader and the augmenter; `source` must then be open_dataset's).
// With several ranks, batch k of rank r is: for endless synth, the single-process batch k * W + r (so W
// ranks at step s see exactly what one process sees in micro-batches sW..sW+W-1 of gradient
// accumulation); for rec/folder and finite synth (data.samples_per_identity > 0), the rank's shard
// of the epoch (DistributedSampler's split).
std::unique_ptr<BatchSource> make_batch_source(const TrainConfig& config, torch::Device device,
                                               std::shared_ptr<const data::ImageSource> source = nullptr,
                                               DataShard shard = {});

// rec/folder: opens data.path (InputError naming it). synth/synthetic: nullptr.
std::shared_ptr<const data::ImageSource> open_dataset(const DataConfig& data);

}  // namespace arcforge::train
