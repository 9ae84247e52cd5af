#include "train/data/loader.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

#include "arcforge/common/counter_rng.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"
#include "arcforge/image/codec.hpp"

namespace arcforge::data {
namespace {

// Samples a worker takes at a time: small, so all workers finish the oldest batch together; the
// lock it costs is noise next to decoding four images.
constexpr int64_t kChunkSamples = 4;
// skip_bad: how many seeded replacements to try before declaring the dataset unusable.
constexpr int kMaxSubstituteAttempts = 16;
// skip_bad: bad images named in the log before the rest are only counted.
constexpr int64_t kMaxLoggedBadImages = 20;

constexpr uint64_t kShuffleTag = 0x5348554646ull;     // "SHUFF": epoch permutations
constexpr uint64_t kSubstituteTag = 0x5355425354ull;  // "SUBST": replacements of bad images

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_options(const LoaderOptions& o) {
  auto fail = [](const std::string& what) { throw ConfigError("loader: " + what); };
  if (o.batch_size < 1) fail("batch_size must be >= 1, got " + std::to_string(o.batch_size));
  if (o.threads < 1) fail("threads must be >= 1, got " + std::to_string(o.threads));
  if (o.prefetch_batches < 1) fail("prefetch_batches must be >= 1, got " + std::to_string(o.prefetch_batches));
  if (o.world_size < 1) fail("world_size must be >= 1, got " + std::to_string(o.world_size));
  if (o.rank < 0 || o.rank >= o.world_size) {
    fail("rank " + std::to_string(o.rank) + " is outside [0, world_size=" + std::to_string(o.world_size) + ")");
  }
  if (o.image_size < 1 || o.image_size > 4096) {
    fail("image_size must be in [1, 4096], got " + std::to_string(o.image_size));
  }
}

// One output coordinate's two source taps: pixel-centre mapping, clamped at the borders, exactly
// as torch's upsample_bilinear2d (align_corners=false) and cv2.INTER_LINEAR compute them.
struct Tap {
  int i0, i1;
  float w0, w1;
};

std::vector<Tap> bilinear_taps(int in, int64_t out) {
  std::vector<Tap> taps(static_cast<size_t>(out));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    const int i0 = std::min(static_cast<int>(std::floor(src)), in - 1);
    const int i1 = i0 < in - 1 ? i0 + 1 : i0;
    const float lambda = std::clamp(src - static_cast<float>(i0), 0.0f, 1.0f);
    taps[static_cast<size_t>(o)] = {i0, i1, 1.0f - lambda, lambda};
  }
  return taps;
}

}  // namespace

// ---------------------------------------------------------------- order: permutation, shard ----

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  if (n < 0) throw std::invalid_argument("epoch_permutation: negative size");
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t h = hash_keys({seed, kShuffleTag, static_cast<uint64_t>(epoch), static_cast<uint64_t>(i)});
    const auto j = static_cast<int64_t>(uniform_index(h, static_cast<uint64_t>(i) + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

std::vector<int64_t> rank_shard(const std::vector<int64_t>& permutation, int rank, int world_size) {
  if (world_size < 1 || rank < 0 || rank >= world_size) throw std::invalid_argument("rank_shard: bad rank");
  const auto n = static_cast<int64_t>(permutation.size());
  if (n == 0) return {};
  const int64_t per_rank = ceil_div(n, world_size);
  std::vector<int64_t> shard(static_cast<size_t>(per_rank));
  for (int64_t t = 0; t < per_rank; ++t) {
    const int64_t position = rank + static_cast<int64_t>(world_size) * t;  // < n + world_size
    shard[static_cast<size_t>(t)] = permutation[static_cast<size_t>(position % n)];
  }
  return shard;
}

// ---------------------------------------------------------------------- pixels -> [3,S,S] ----

void image_to_chw(const image::Image& img, int64_t size, uint8_t* out) {
  if (img.empty() || (img.channels != 1 && img.channels != 3) ||
      img.pixels.size() != static_cast<size_t>(img.height) * img.row_bytes()) {
    throw std::invalid_argument("image_to_chw: not a 1- or 3-channel image");
  }
  if (size < 1) throw std::invalid_argument("image_to_chw: size must be >= 1");
  const auto plane = static_cast<size_t>(size * size);
  const size_t channels = static_cast<size_t>(img.channels);
  const size_t green = channels == 3 ? 1 : 0, blue = channels == 3 ? 2 : 0;  // gray: one plane thrice
  uint8_t* r_out = out;
  uint8_t* g_out = out + plane;
  uint8_t* b_out = out + 2 * plane;

  if (img.width == size && img.height == size) {  // aligned faces: a plain HWC -> CHW transpose
    const uint8_t* src = img.pixels.data();
    for (size_t p = 0; p < plane; ++p, src += channels) {
      r_out[p] = src[0];
      g_out[p] = src[green];
      b_out[p] = src[blue];
    }
    return;
  }

  const std::vector<Tap> xs = bilinear_taps(img.width, size);
  const std::vector<Tap> ys = bilinear_taps(img.height, size);
  const size_t lane[3] = {0, green, blue};
  uint8_t* planes[3] = {r_out, g_out, b_out};
  for (int64_t y = 0; y < size; ++y) {
    const Tap& ty = ys[static_cast<size_t>(y)];
    const uint8_t* row0 = img.pixels.data() + static_cast<size_t>(ty.i0) * img.row_bytes();
    const uint8_t* row1 = img.pixels.data() + static_cast<size_t>(ty.i1) * img.row_bytes();
    for (int64_t x = 0; x < size; ++x) {
      const Tap& tx = xs[static_cast<size_t>(x)];
      const size_t a = static_cast<size_t>(tx.i0) * channels, b = static_cast<size_t>(tx.i1) * channels;
      const size_t p = static_cast<size_t>(y * size + x);
      for (int c = 0; c < 3; ++c) {
        const size_t l = lane[c];
        const float top = tx.w0 * row0[a + l] + tx.w1 * row0[b + l];
        const float bottom = tx.w0 * row1[a + l] + tx.w1 * row1[b + l];
        const float v = ty.w0 * top + ty.w1 * bottom;  // a convex mix of bytes: within [0, 255]
        planes[c][p] = static_cast<uint8_t>(std::min(v + 0.5f, 255.0f));
      }
    }
  }
}

// ------------------------------------------------------------------------------- loader ----

// A ring entry: one batch being filled or waiting for the consumer.
struct Loader::Slot {
  int64_t global = -1;  // the batch held, -1 = free
  int64_t count = 0;    // samples in it (batch_size, or fewer for a final partial batch)
  int64_t chunks_left = 0;
  std::shared_ptr<const std::vector<int64_t>> shard;
  torch::Tensor images, labels, indices;  // allocated by the consumer's thread (see allocate_buffers)
  int64_t substituted = 0;
  std::vector<std::pair<int64_t, std::string>> bad;  // (position, error) of each replaced image
  std::exception_ptr error;                          // the first failure by position in the batch
  int64_t error_position = std::numeric_limits<int64_t>::max();
};

// The work a worker takes out of the lock: positions [begin, end) of one batch.
struct Loader::Chunk {
  uint64_t generation = 0;
  int64_t global = 0, epoch = 0, begin = 0, end = 0;
  int64_t shard_offset = 0;  // the batch's first position in the rank's shard
  std::shared_ptr<const std::vector<int64_t>> shard;
  torch::Tensor images, labels, indices;  // references keep them alive if a seek drops the slot
  // results
  int64_t substituted = 0;
  std::vector<std::pair<int64_t, std::string>> bad;
  std::exception_ptr error;
  int64_t error_position = std::numeric_limits<int64_t>::max();
};

Loader::Loader(std::shared_ptr<const ImageSource> source, LoaderOptions options)
    : source_(std::move(source)), options_(options) {
  if (!source_) throw ConfigError("loader: no image source");
  check_options(options_);
  const int64_t n = source_->size();
  if (n < 1) throw InputError(source_->summary() + ": no images");
  samples_per_rank_ = ceil_div(n, options_.world_size);
  batches_per_epoch_ = options_.drop_last ? samples_per_rank_ / options_.batch_size
                                          : ceil_div(samples_per_rank_, options_.batch_size);
  if (batches_per_epoch_ < 1) {
    throw InputError(source_->summary() + ": each of " + std::to_string(options_.world_size) + " ranks gets " +
                     std::to_string(samples_per_rank_) + " images, fewer than one batch of " +
                     std::to_string(options_.batch_size) + " (drop_last)");
  }
  // Page-locked memory needs a CUDA driver; on a CPU-only build the option does nothing.
  pinned_ = options_.pin_memory && torch::cuda::is_available();

  for (int64_t i = 0; i < options_.prefetch_batches; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    allocate_buffers(*slots_.back());
  }
  try {
    for (int t = 0; t < options_.threads; ++t) workers_.emplace_back([this] { worker_loop(); });
  } catch (...) {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_ready_.notify_all();
    for (auto& w : workers_) w.join();
    throw;
  }
}

Loader::~Loader() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& w : workers_) w.join();
}

// Called only on the thread that owns the Loader (constructor, next, seek): with pin_memory the
// page-locked allocation then happens on the trainer's CUDA device, not device 0 of a worker.
void Loader::allocate_buffers(Slot& slot) const {
  const int64_t b = options_.batch_size, s = options_.image_size;
  const auto pinned = torch::TensorOptions().pinned_memory(pinned_);
  slot.images = torch::empty({b, 3, s, s}, pinned.dtype(torch::kUInt8));
  slot.labels = torch::empty({b}, pinned.dtype(torch::kInt64));
  slot.indices = torch::empty({b}, torch::kInt64);
}

std::shared_ptr<const std::vector<int64_t>> Loader::shard_for_epoch(int64_t epoch) {
  // Batches start in increasing order, so older epochs are done with (slots and chunks hold their
  // own references); after a backward seek an evicted epoch is simply recomputed.
  shards_.erase(shards_.begin(), shards_.lower_bound(epoch));
  auto it = shards_.find(epoch);
  if (it != shards_.end()) return it->second;
  auto shard = std::make_shared<const std::vector<int64_t>>(rank_shard(
      epoch_permutation(source_->size(), options_.seed, epoch), options_.rank, options_.world_size));
  shards_.emplace(epoch, shard);
  return shard;
}

void Loader::start_batch(Slot& slot, int64_t global) {
  const int64_t epoch = global / batches_per_epoch_;
  const int64_t offset = (global % batches_per_epoch_) * options_.batch_size;
  slot.global = global;
  slot.count = std::min(options_.batch_size, samples_per_rank_ - offset);
  slot.chunks_left = ceil_div(slot.count, kChunkSamples);
  slot.shard = shard_for_epoch(epoch);
  slot.substituted = 0;
  slot.bad.clear();
  slot.error = nullptr;
  slot.error_position = std::numeric_limits<int64_t>::max();
}

void Loader::worker_loop() {
  const auto ring = static_cast<int64_t>(slots_.size());
  std::unique_lock lock(mutex_);
  while (true) {
    work_ready_.wait(lock, [&] { return stopping_ || (!failed_ && fill_batch_ < consumer_next_ + ring); });
    if (stopping_) return;
    Chunk chunk;
    try {
      Slot& slot = *slots_[static_cast<size_t>(fill_batch_ % ring)];
      if (fill_position_ == 0) start_batch(slot, fill_batch_);
      chunk.generation = generation_;
      chunk.global = fill_batch_;
      chunk.epoch = fill_batch_ / batches_per_epoch_;
      chunk.shard_offset = (fill_batch_ % batches_per_epoch_) * options_.batch_size;
      chunk.shard = slot.shard;
      chunk.images = slot.images;
      chunk.labels = slot.labels;
      chunk.indices = slot.indices;
      chunk.begin = fill_position_;
      chunk.end = std::min(fill_position_ + kChunkSamples, slot.count);
      fill_position_ = chunk.end;
      if (fill_position_ == slot.count) {
        ++fill_batch_;
        fill_position_ = 0;
      }
    } catch (...) {  // not an image problem (e.g. no memory for a permutation): stop everything
      worker_died_ = std::current_exception();
      failed_ = true;
      batch_ready_.notify_all();
      continue;
    }
    lock.unlock();
    fill_chunk(chunk);
    lock.lock();
    if (chunk.generation != generation_) continue;  // seek() dropped this batch meanwhile
    Slot& slot = *slots_[static_cast<size_t>(chunk.global % ring)];
    slot.substituted += chunk.substituted;
    for (auto& entry : chunk.bad) slot.bad.push_back(std::move(entry));
    if (chunk.error && chunk.error_position < slot.error_position) {
      slot.error = chunk.error;
      slot.error_position = chunk.error_position;
    }
    if (--slot.chunks_left == 0) batch_ready_.notify_all();
  }
}

// Runs without the lock. Never throws: every failure is recorded in the chunk for next().
void Loader::fill_chunk(Chunk& chunk) const {
  const int64_t s = options_.image_size;
  const int64_t image_bytes = 3 * s * s;
  auto* images = chunk.images.data_ptr<uint8_t>();
  auto* labels = chunk.labels.data_ptr<int64_t>();
  auto* indices = chunk.indices.data_ptr<int64_t>();
  const auto load = [&](int64_t index, int64_t position) {
    const std::string bytes = source_->read(index);
    const image::Image decoded = image::decode(bytes, source_->describe(index));
    image_to_chw(decoded, s, images + position * image_bytes);
    labels[position] = source_->label(index);
    indices[position] = index;
  };
  for (int64_t position = chunk.begin; position < chunk.end; ++position) {
    const int64_t in_shard = chunk.shard_offset + position;
    const int64_t index = (*chunk.shard)[static_cast<size_t>(in_shard)];
    try {
      try {
        load(index, position);
      } catch (const InputError& bad) {
        if (!options_.skip_bad) throw;
        // A seeded draw keeps the batch full-size and still a pure function of its number.
        bool replaced = false;
        for (int attempt = 0; attempt < kMaxSubstituteAttempts && !replaced; ++attempt) {
          const uint64_t h = hash_keys({options_.seed, kSubstituteTag, static_cast<uint64_t>(options_.rank),
                                        static_cast<uint64_t>(options_.world_size),
                                        static_cast<uint64_t>(chunk.epoch), static_cast<uint64_t>(in_shard),
                                        static_cast<uint64_t>(attempt)});
          const auto candidate = static_cast<int64_t>(uniform_index(h, static_cast<uint64_t>(source_->size())));
          try {
            load(candidate, position);
            replaced = true;
          } catch (const InputError&) {
          }
        }
        if (!replaced) {
          throw InputError(std::string(bad.what()) + " (skip_bad: " + std::to_string(kMaxSubstituteAttempts) +
                           " seeded replacements were bad too; is most of the dataset unreadable?)");
        }
        ++chunk.substituted;
        chunk.bad.emplace_back(position, bad.what());
      }
    } catch (...) {
      chunk.error = std::current_exception();
      chunk.error_position = position;
      return;  // the batch is lost anyway; the rest of the chunk would be wasted work
    }
  }
}

LoadedBatch Loader::next() {
  // Fresh buffers for the slot this call frees, allocated before taking the lock.
  Slot fresh;
  allocate_buffers(fresh);
  std::vector<std::string> to_log;
  LoadedBatch batch;
  {
    std::unique_lock lock(mutex_);
    if (worker_died_) std::rethrow_exception(worker_died_);
    if (failure_) std::rethrow_exception(failure_);
    const int64_t g = consumer_next_;
    Slot& slot = *slots_[static_cast<size_t>(g % static_cast<int64_t>(slots_.size()))];
    batch_ready_.wait(lock, [&] { return worker_died_ || (slot.global == g && slot.chunks_left == 0); });
    if (worker_died_) std::rethrow_exception(worker_died_);
    batch.epoch = g / batches_per_epoch_;
    batch.index = g % batches_per_epoch_;
    batch.global = g;
    if (slot.error) {
      failed_ = true;  // workers go idle until seek()
      failure_ = slot.error;
      try {
        std::rethrow_exception(slot.error);
      } catch (const InputError& e) {
        const std::string hint = options_.skip_bad ? "" : "; LoaderOptions::skip_bad replaces and counts bad images";
        failure_ = std::make_exception_ptr(InputError(std::string(e.what()) + " (loader: epoch " +
                                                      std::to_string(batch.epoch) + ", batch " +
                                                      std::to_string(batch.index) + hint + ")"));
      } catch (...) {
      }
      std::rethrow_exception(failure_);
    }
    const bool partial = slot.count < options_.batch_size;
    batch.images = partial ? slot.images.narrow(0, 0, slot.count) : slot.images;
    batch.labels = partial ? slot.labels.narrow(0, 0, slot.count) : slot.labels;
    batch.indices = partial ? slot.indices.narrow(0, 0, slot.count) : slot.indices;
    batch.substituted = slot.substituted;
    bad_images_ += slot.substituted;
    std::sort(slot.bad.begin(), slot.bad.end());
    for (auto& [position, message] : slot.bad) {
      if (bad_images_logged_ < kMaxLoggedBadImages) to_log.push_back("skip_bad: replaced " + message);
      if (++bad_images_logged_ == kMaxLoggedBadImages) {
        to_log.push_back("skip_bad: further bad images are replaced and counted without a log line");
      }
    }
    std::swap(slot.images, fresh.images);
    std::swap(slot.labels, fresh.labels);
    std::swap(slot.indices, fresh.indices);
    slot.global = -1;
    slot.shard.reset();
    slot.bad.clear();
    ++consumer_next_;
  }
  work_ready_.notify_all();
  for (const auto& line : to_log) log::warn(line);
  return batch;
}

void Loader::seek(int64_t global_batch) {
  if (global_batch < 0) throw std::invalid_argument("Loader::seek: negative batch number");
  // New buffers for every slot: a worker still decoding into an old one writes into an orphan.
  std::vector<Slot> fresh(slots_.size());
  for (auto& f : fresh) allocate_buffers(f);
  {
    std::lock_guard lock(mutex_);
    ++generation_;
    consumer_next_ = fill_batch_ = global_batch;
    fill_position_ = 0;
    failed_ = worker_died_ != nullptr;  // a dead pipeline stays dead
    failure_ = nullptr;
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& slot = *slots_[i];
      slot.global = -1;
      slot.chunks_left = 0;
      slot.shard.reset();
      slot.bad.clear();
      slot.error = nullptr;
      std::swap(slot.images, fresh[i].images);
      std::swap(slot.labels, fresh[i].labels);
      std::swap(slot.indices, fresh[i].indices);
    }
  }
  work_ready_.notify_all();
}

int64_t Loader::bad_images() const {
  std::lock_guard lock(mutex_);
  return bad_images_;
}

}  // namespace arcforge::data
