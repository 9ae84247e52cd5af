#pragma once
// The training data loader for real datasets: reads encoded images from an ImageSource (.rec or
// image folder), decodes them on its own worker threads, and hands out whole uint8 batches in a
// fixed order through a bounded prefetch ring. No augmentation and no normalisation here: the
// batch goes to the device as uint8 and the (batched, on-device) augmenter takes it from there.
//
// Use, one Loader per rank (the trainer's step k consumes global batch k):
//   std::shared_ptr<const ImageSource> source = open_image_source(data_path);
//   Loader loader(source, {.batch_size = 128, .threads = 6, .seed = seed, .rank = rank,
//                          .world_size = world, .pin_memory = device.is_cuda()});
//   loader.seek(first_step);                      // resuming from a checkpoint; 0 otherwise
//   LoadedBatch b = loader.next();                // every step
//   auto images = b.images.to(device, /*non_blocking=*/true);  // uint8 -> augment -> (x-127.5)/127.5
//   Steps per epoch are loader.batches_per_epoch() (= ceil(N / world) / batch_size with drop_last).
//
// Order (arcface_torch's DistributedSampler + DataLoader(drop_last=True), made counter-based):
//   - epoch e's permutation of the N samples is epoch_permutation(N, seed, e), a Fisher-Yates
//     shuffle whose draws are hash_keys(seed, e, i): a pure function of (seed, e);
//   - rank r of W takes positions r, r+W, r+2W, ... of it, PADDED to ceil(N/W) samples by wrapping
//     around to the permutation's start (DistributedSampler's default), so every rank gets the
//     same number of samples and therefore the same number of batches;
//   - the rank's samples are cut into batches of batch_size; drop_last drops the final partial
//     batch (the default, as arcface_torch), otherwise it is delivered smaller;
//   - batches are numbered globally from the start of training: global batch g is batch
//     g % batches_per_epoch() of epoch g / batches_per_epoch(). Epochs roll over by themselves.
// So batch g's content is a pure function of (source, seed, rank, world_size, batch_size,
// drop_last, g) — never of the thread count or of timing — and seek(g) resumes exactly.
//
// Threads: `threads` workers, separate from libtorch's intra-op pool (they run no torch ops;
// budget loader threads + at::get_num_threads() <= cores). They split each batch into small
// chunks, so every worker helps finish the oldest batch first, and write pixels straight into the
// batch tensor. At most prefetch_batches batches are being filled or waiting at any time
// (memory: prefetch_batches * batch_size * 3 * S * S bytes).
//
// Bad images (unreadable bytes, corrupt JPEG/PNG/WebP): by default the first one stops the
// pipeline; next() throws an InputError naming it (ImageSource::describe) when the consumer
// reaches the batch holding it, and keeps throwing until seek(). With skip_bad, each bad sample is
// replaced by a seeded draw of another sample (the batch stays full-size, which DDP and Partial
// FC's all-gathers need), counted in LoadedBatch::substituted and bad_images(), and logged
// (the first few).
#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "arcforge/image/image.hpp"
#include "train/data/image_source.hpp"

namespace arcforge::data {

struct LoaderOptions {
  int64_t batch_size = 128;
  int threads = 4;               // decoding workers, >= 1
  int64_t prefetch_batches = 4;  // batches filled ahead of the consumer, >= 1
  uint64_t seed = 0;             // the shuffle seed (the same on every rank)
  int rank = 0;                  // this process's shard: 0 <= rank < world_size
  int world_size = 1;
  bool drop_last = true;     // drop each epoch's final partial batch (arcface_torch does)
  bool pin_memory = false;   // page-locked batch memory, for non_blocking copies; CUDA only
  int64_t image_size = 112;  // S: images that are not S x S are resized (bilinear) to it
  bool skip_bad = false;     // replace and count bad images instead of stopping
};

struct LoadedBatch {
  torch::Tensor images;   // [B,3,S,S] uint8 RGB, CPU (page-locked when pin_memory took effect)
  torch::Tensor labels;   // [B] int64 class of each image
  torch::Tensor indices;  // [B] int64 the source sample each image came from
  int64_t epoch = 0;      // epoch this batch belongs to
  int64_t index = 0;      // batch number within the epoch
  int64_t global = 0;     // batch number since the start: epoch * batches_per_epoch + index
  int64_t substituted = 0;  // bad images replaced in this batch (skip_bad)
};

class Loader {
 public:
  // Throws ConfigError for impossible options and InputError when the rank's shard holds fewer
  // samples than one batch under drop_last. Starts the workers at global batch 0.
  Loader(std::shared_ptr<const ImageSource> source, LoaderOptions options);
  // Stops and joins the workers; each finishes at most the chunk of a few images in hand.
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch in order; blocks until it is complete. Throws the first bad image's
  // InputError (see above) when that batch is reached, then again on every call until seek().
  LoadedBatch next();
  // Resume: the next batch next() returns is global batch `global_batch`. Discards batches
  // prefetched so far and clears a stopped pipeline's error.
  void seek(int64_t global_batch);

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t samples_per_rank() const { return samples_per_rank_; }  // ceil(N / world_size)
  int64_t bad_images() const;  // total `substituted` over the batches next() returned
  const LoaderOptions& options() const { return options_; }
  const ImageSource& source() const { return *source_; }

 private:
  struct Slot;
  struct Chunk;
  void worker_loop();
  void start_batch(Slot& slot, int64_t global);
  void fill_chunk(Chunk& chunk) const;
  std::shared_ptr<const std::vector<int64_t>> shard_for_epoch(int64_t epoch);
  void allocate_buffers(Slot& slot) const;

  std::shared_ptr<const ImageSource> source_;
  LoaderOptions options_;
  bool pinned_ = false;
  int64_t samples_per_rank_ = 0;
  int64_t batches_per_epoch_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;   // workers wait: room in the window, seek, stop
  std::condition_variable batch_ready_;  // the consumer waits: its batch complete, a worker died
  std::vector<std::unique_ptr<Slot>> slots_;  // ring: global batch g fills slots_[g % size]
  int64_t consumer_next_ = 0;  // the global batch next() returns
  int64_t fill_batch_ = 0;     // the batch whose chunks are being handed out
  int64_t fill_position_ = 0;  // first sample of it not yet handed out
  uint64_t generation_ = 0;    // bumped by seek(): chunks of older generations are discarded
  bool stopping_ = false;
  bool failed_ = false;            // a bad image was delivered as an error; workers idle
  std::exception_ptr failure_;     // that error, rethrown until seek()
  std::exception_ptr worker_died_; // an unexpected error outside any image (a bug, bad_alloc)
  int64_t bad_images_ = 0;
  int64_t bad_images_logged_ = 0;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> shards_;  // epoch -> rank's samples
  std::vector<std::thread> workers_;
};

// Epoch `epoch`'s shuffle of 0..n-1: Fisher-Yates, swap i with j = hash_keys(seed, tag, epoch, i)
// mod (i+1) for i = n-1 .. 1.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

// Rank `rank`'s samples of a permutation: positions rank, rank+W, ..., ceil(n/W) of them, the
// positions past the end wrapping around to the start (DistributedSampler's padding).
std::vector<int64_t> rank_shard(const std::vector<int64_t>& permutation, int rank, int world_size);

// Writes a decoded 1- or 3-channel HWC image as [3,S,S] planes (CHW, RGB; gray is replicated) to
// `out` (3*S*S bytes). An image that is not S x S is resized with bilinear interpolation on pixel
// centres (align_corners=false, no antialiasing: cv2.INTER_LINEAR / torch's bilinear), aspect
// ratio not kept — meant for aligned face crops, which are S x S already.
void image_to_chw(const image::Image& image, int64_t size, uint8_t* out);

}  // namespace arcforge::data
