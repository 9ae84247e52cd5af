#pragma once
// Batches from a real dataset (RecordIO or an image folder): the multi-threaded Loader decodes
// uint8 images on CPU threads, the batch moves to the device, and the Augmenter runs there.
// Batch k is a pure function of (configuration, k): the loader's epoch-wise shuffle and the
// augmenter's counter RNG are both keyed by it, so a resumed run sees the same batches.
#include <memory>

#include "train/data/augment.hpp"
#include "train/data/image_source.hpp"
#include "train/data/loader.hpp"
#include "train/train/batch_source.hpp"
#include "train/train/config.hpp"

namespace arcforge::train {

class LoaderBatches : public BatchSource {
 public:
  LoaderBatches(std::shared_ptr<const data::ImageSource> source, const TrainConfig& config, torch::Device device,
                DataShard shard = {});
  Batch batch(int64_t index, torch::Device device) override;

 private:
  data::Loader loader_;
  data::Augmenter augmenter_;
  bool augment_;
  DataShard shard_;
  int64_t next_index_ = 0;
  int64_t reported_bad_ = 0;  // bad images already reported at an epoch's end
};

}  // namespace arcforge::train
