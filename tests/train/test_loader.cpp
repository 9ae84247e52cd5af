// The data loader on real dataset files: an image folder of synth faces (JPEG, PNG, a gray PNG,
// and 128x128 images that need resizing) and the same folder packed to .rec. Checks the sources
// against the files, the epoch order against an independent reading of the sampler rules, thread
// and resume independence, rank shards, pixels against decoding the file directly (an exact
// double-precision bilinear and torch's interpolate as the resize references), bad images (error
// or skip-and-count), the bounded prefetch and prompt destruction.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/data/image_folder.hpp"
#include "arcforge/image/codec.hpp"
#include "train/data/image_source.hpp"
#include "train/data/loader.hpp"
#include "train/data/synth.hpp"

using namespace arcforge;
using namespace arcforge::data;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Images per identity folder; identity 6's images are 128x128 (the loader resizes them to 112).
constexpr int64_t kPerIdentity[] = {5, 4, 6, 3, 5, 4, 4};
constexpr int64_t kIdentities = 7;
constexpr int64_t kImages = 31;  // odd: two ranks need one padded sample
constexpr int64_t kS = 112;

image::Image to_image(const torch::Tensor& chw01) {
  auto hwc = (chw01 * 255).round().clamp(0, 255).to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  image::Image img(static_cast<int>(hwc.size(1)), static_cast<int>(hwc.size(0)), 3);
  std::memcpy(img.pixels.data(), hwc.data_ptr<uint8_t>(), img.pixels.size());
  return img;
}

image::Image to_gray(const image::Image& rgb) {
  image::Image gray(rgb.width, rgb.height, 1);
  for (int y = 0; y < rgb.height; ++y)
    for (int x = 0; x < rgb.width; ++x)
      gray.at(x, y, 0) = static_cast<uint8_t>((rgb.at(x, y, 0) + rgb.at(x, y, 1) + rgb.at(x, y, 2)) / 3);
  return gray;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// The dataset files, built once per test binary and removed at exit.
struct Fixture {
  std::string dir, folder, rec_dir, bad_folder, bad_rec;
  std::vector<std::string> paths;  // in the folder scan's order (identity, then file name)
  std::vector<int64_t> labels;

  Fixture() {
    dir = (fs::temp_directory_path() / ("arcforge_test_loader_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    folder = dir + "/faces";
    rec_dir = dir + "/rec";
    // One render call for every image; identity 6's are then upscaled to 128x128.
    std::vector<int64_t> ids, samples;
    for (int64_t id = 0; id < kIdentities; ++id) {
      for (int64_t j = 0; j < kPerIdentity[id]; ++j) ids.push_back(id), samples.push_back(j);
    }
    auto rgb = SynthFaces(SynthOptions{kIdentities, 11, 112}).render(torch::tensor(ids), torch::tensor(samples));
    namespace F = torch::nn::functional;
    for (size_t i = 0; i < ids.size(); ++i) {
      const int64_t id = ids[i], j = samples[i];
      const std::string id_dir = folder + "/id" + std::to_string(id);
      fs::create_directories(id_dir);
      auto face = rgb[static_cast<int64_t>(i)];
      if (id == 6) {
        face = F::interpolate(face.unsqueeze(0), F::InterpolateFuncOptions()
                                                     .size(std::vector<int64_t>{128, 128})
                                                     .mode(torch::kBilinear)
                                                     .align_corners(false))
                   .squeeze(0);
      }
      image::Image img = to_image(face);
      const bool png = j % 3 == 1;
      if (id == 2 && j == 1) img = to_gray(img);  // a gray PNG: decoded to RGB, one value thrice
      const std::string path = id_dir + "/img" + std::to_string(j) + (png ? ".png" : ".jpg");
      write_bytes(path, png ? image::encode_png(img) : image::encode_jpeg(img, 95));
      paths.push_back(path);
      labels.push_back(id);
    }
    pack_image_folder(scan_image_folder(folder), rec_dir + "/train.rec");

    // Identities 0..2 plus one JPEG cut in half (its header intact, so packing accepts it).
    bad_folder = dir + "/bad_faces";
    for (int id = 0; id < 3; ++id) {
      fs::create_directories(bad_folder + "/id" + std::to_string(id));
      fs::copy(folder + "/id" + std::to_string(id), bad_folder + "/id" + std::to_string(id),
               fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    }
    const std::string good = read_file(folder + "/id1/img0.jpg");
    write_bytes(bad_folder + "/id1/zz_corrupt.jpg", good.substr(0, good.size() / 2));
    bad_rec = dir + "/bad_rec/train.rec";
    pack_image_folder(scan_image_folder(bad_folder), bad_rec);
  }
  ~Fixture() { fs::remove_all(dir); }
};

const Fixture& fixture() {
  static Fixture f;
  return f;
}

std::shared_ptr<const ImageSource> open_source(const std::string& path) { return open_image_source(path); }

LoaderOptions small_options(int64_t batch, int threads, bool drop_last) {
  LoaderOptions o;
  o.batch_size = batch;
  o.threads = threads;
  o.prefetch_batches = 3;
  o.seed = 42;
  o.drop_last = drop_last;
  return o;
}

std::vector<int64_t> as_vector(const torch::Tensor& t) {
  auto c = t.contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

void expect_same_batch(const LoadedBatch& a, const LoadedBatch& b) {
  EXPECT_EQ(a.global, b.global);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(as_vector(a.indices), as_vector(b.indices));
  EXPECT_EQ(as_vector(a.labels), as_vector(b.labels));
  EXPECT_TRUE(torch::equal(a.images, b.images)) << "batch " << a.global;
}

// The reference pixels: decode the file, HWC -> CHW with torch, and torch's bilinear resize
// (align_corners=false) of the float image when it is not S x S.
torch::Tensor expected_chw(const std::string& path) {
  image::Image img = image::decode_file(path);
  auto chw = torch::from_blob(img.pixels.data(), {img.height, img.width, 3}, torch::kUInt8)
                 .permute({2, 0, 1})
                 .to(torch::kFloat)
                 .unsqueeze(0);
  if (img.width != kS || img.height != kS) {
    namespace F = torch::nn::functional;
    chw = F::interpolate(chw, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{kS, kS})
                                  .mode(torch::kBilinear)
                                  .align_corners(false));
  }
  return (chw.squeeze(0) + 0.5).floor().clamp(0, 255).to(torch::kUInt8);  // halves round up, as the loader
}

// Runs f on another thread; a hang (the thing under test) ends the binary instead of the CI job.
template <typename F>
void finishes_within(std::chrono::seconds limit, const char* what, F f) {
  auto done = std::async(std::launch::async, f);
  if (done.wait_for(limit) == std::future_status::timeout) {
    std::fprintf(stderr, "FATAL: %s did not finish within %lld s\n", what, static_cast<long long>(limit.count()));
    std::_Exit(1);
  }
  done.get();
}

// Forwards to a source, counting reads and optionally sleeping in each (a slow disk).
class CountingSource final : public ImageSource {
 public:
  CountingSource(std::shared_ptr<const ImageSource> inner, std::chrono::milliseconds delay)
      : inner_(std::move(inner)), delay_(delay) {}
  int64_t size() const override { return inner_->size(); }
  int64_t num_classes() const override { return inner_->num_classes(); }
  int64_t label(int64_t i) const override { return inner_->label(i); }
  std::string read(int64_t i) const override {
    ++reads;
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    return inner_->read(i);
  }
  std::string describe(int64_t i) const override { return inner_->describe(i); }
  std::string summary() const override { return "counting " + inner_->summary(); }
  mutable std::atomic<int64_t> reads{0};

 private:
  std::shared_ptr<const ImageSource> inner_;
  std::chrono::milliseconds delay_;
};

}  // namespace

// ------------------------------------------------------------------------------ sources ----

TEST(ImageSource, FolderAndRecordGiveTheSameSamples) {
  const Fixture& f = fixture();
  auto folder = open_source(f.folder);
  auto rec = open_source(f.rec_dir);  // a folder holding train.rec: arcface_torch's convention
  auto rec_file = open_source(f.rec_dir + "/train.rec");
  ASSERT_EQ(folder->size(), kImages);
  ASSERT_EQ(rec->size(), kImages);
  EXPECT_EQ(rec_file->size(), kImages);
  EXPECT_EQ(folder->num_classes(), kIdentities);
  EXPECT_EQ(rec->num_classes(), kIdentities);
  for (int64_t i = 0; i < kImages; ++i) {
    EXPECT_EQ(folder->label(i), f.labels[static_cast<size_t>(i)]);
    EXPECT_EQ(rec->label(i), f.labels[static_cast<size_t>(i)]);
    const std::string file = read_file(f.paths[static_cast<size_t>(i)]);
    EXPECT_EQ(folder->read(i), file) << i;
    EXPECT_EQ(rec->read(i), file) << i;  // pack keeps the bytes; key i+1 is sample i
    EXPECT_EQ(folder->describe(i), f.paths[static_cast<size_t>(i)]);
    EXPECT_NE(rec->describe(i).find("train.rec: key " + std::to_string(i + 1)), std::string::npos)
        << rec->describe(i);
  }
  EXPECT_NE(folder->summary().find("31 images, 7 classes"), std::string::npos) << folder->summary();
  EXPECT_THROW(folder->read(kImages), std::out_of_range);
}

TEST(ImageSource, OpenErrorsNameThePath) {
  const Fixture& f = fixture();
  const auto message = [](const std::string& path) {
    try {
      open_image_source(path);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(f.dir + "/missing").find(f.dir + "/missing"), std::string::npos);
  write_bytes(f.dir + "/notes.txt", "hello");
  EXPECT_NE(message(f.dir + "/notes.txt").find("not a dataset"), std::string::npos);
  fs::create_directories(f.dir + "/empty_root");
  EXPECT_NE(message(f.dir + "/empty_root").find("empty_root"), std::string::npos);
}

// ------------------------------------------------------------------------------ order ----

TEST(LoaderOrder, PermutationIsSeededFisherYates) {
  const auto p0 = epoch_permutation(kImages, 42, 0);
  EXPECT_EQ(p0, epoch_permutation(kImages, 42, 0));  // reproducible
  EXPECT_NE(p0, epoch_permutation(kImages, 42, 1));  // differs between epochs
  EXPECT_NE(p0, epoch_permutation(kImages, 43, 0));  // and between seeds
  auto sorted = p0;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < kImages; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
  // Uniform over all 24 orders of 4 (2400 epochs, 100 expected each): an off-by-one in the draw
  // range (Sattolo's cycle) would never give the identity, a bias would skew the counts.
  std::map<std::vector<int64_t>, int> counts;
  for (int64_t e = 0; e < 2400; ++e) ++counts[epoch_permutation(4, 7, e)];
  EXPECT_EQ(counts.size(), 24u);
  for (const auto& [perm, count] : counts) {
    EXPECT_GT(count, 55);
    EXPECT_LT(count, 150);
  }
}

TEST(LoaderOrder, EpochCoversEveryImageOnceWithoutDropLast) {
  auto source = open_source(fixture().folder);
  Loader loader(source, small_options(8, 2, /*drop_last=*/false));
  ASSERT_EQ(loader.batches_per_epoch(), 4);  // 8 + 8 + 8 + 7
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> seen;
    for (int64_t k = 0; k < 4; ++k) {
      LoadedBatch b = loader.next();
      EXPECT_EQ(b.epoch, epoch);
      EXPECT_EQ(b.index, k);
      EXPECT_EQ(b.global, epoch * 4 + k);
      const int64_t n = k < 3 ? 8 : 7;
      ASSERT_EQ(b.images.sizes(), (std::vector<int64_t>{n, 3, kS, kS}));
      EXPECT_EQ(b.images.scalar_type(), torch::kUInt8);
      ASSERT_EQ(b.labels.numel(), n);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(b.labels[i].item<int64_t>(), source->label(b.indices[i].item<int64_t>()));
      }
      auto idx = as_vector(b.indices);
      seen.insert(seen.end(), idx.begin(), idx.end());
    }
    // With one rank the order is exactly the epoch's permutation.
    EXPECT_EQ(seen, epoch_permutation(kImages, 42, epoch));
    std::sort(seen.begin(), seen.end());
    for (int64_t i = 0; i < kImages; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], i);
  }
}

TEST(LoaderOrder, DropLastGivesFullBatchesAndRollsOver) {
  Loader loader(open_source(fixture().folder), small_options(8, 2, /*drop_last=*/true));
  ASSERT_EQ(loader.batches_per_epoch(), 3);  // 31 / 8, the 7 left over are dropped
  std::vector<int64_t> first_epoch;
  for (int64_t g = 0; g < 7; ++g) {
    LoadedBatch b = loader.next();
    EXPECT_EQ(b.images.size(0), 8);
    EXPECT_EQ(b.epoch, g / 3);
    EXPECT_EQ(b.index, g % 3);
    if (b.epoch == 0) {
      auto idx = as_vector(b.indices);
      first_epoch.insert(first_epoch.end(), idx.begin(), idx.end());
    }
    if (b.epoch == 1 && b.index == 0) {
      const auto p1 = epoch_permutation(kImages, 42, 1);
      EXPECT_EQ(as_vector(b.indices), std::vector<int64_t>(p1.begin(), p1.begin() + 8));
    }
  }
  const auto p0 = epoch_permutation(kImages, 42, 0);
  EXPECT_EQ(first_epoch, std::vector<int64_t>(p0.begin(), p0.begin() + 24));
  EXPECT_EQ(std::set<int64_t>(first_epoch.begin(), first_epoch.end()).size(), 24u);
}

TEST(LoaderOrder, BatchesDoNotDependOnThreadsOrPrefetch) {
  auto source = open_source(fixture().rec_dir);
  LoaderOptions one = small_options(6, 1, false);
  one.prefetch_batches = 1;
  LoaderOptions four = small_options(6, 4, false);
  four.prefetch_batches = 5;
  Loader a(source, one), b(source, four);
  for (int64_t g = 0; g < 2 * a.batches_per_epoch() + 1; ++g) expect_same_batch(a.next(), b.next());
}

TEST(LoaderOrder, SeekResumesAtTheSameBatch) {
  auto source = open_source(fixture().folder);
  const LoaderOptions o = small_options(8, 2, true);
  Loader reference(source, o);
  std::vector<LoadedBatch> batches;
  for (int g = 0; g < 8; ++g) batches.push_back(reference.next());

  Loader resumed(source, o);
  resumed.seek(5);  // epoch 1, batch 2
  expect_same_batch(resumed.next(), batches[5]);
  expect_same_batch(resumed.next(), batches[6]);
  resumed.seek(1);  // backwards, with prefetched batches in flight
  expect_same_batch(resumed.next(), batches[1]);
  resumed.seek(7);
  expect_same_batch(resumed.next(), batches[7]);
}

TEST(LoaderOrder, RanksSplitTheEpochDistributedSamplerStyle) {
  auto source = open_source(fixture().folder);
  const auto perm = epoch_permutation(kImages, 42, 0);
  std::vector<int64_t> all;
  for (int rank = 0; rank < 2; ++rank) {
    LoaderOptions o = small_options(4, 2, false);
    o.rank = rank;
    o.world_size = 2;
    Loader loader(source, o);
    EXPECT_EQ(loader.samples_per_rank(), 16);
    ASSERT_EQ(loader.batches_per_epoch(), 4);  // the same on every rank
    std::vector<int64_t> mine;
    for (int k = 0; k < 4; ++k) {
      auto idx = as_vector(loader.next().indices);
      mine.insert(mine.end(), idx.begin(), idx.end());
    }
    // Rank r takes positions r, r+2, r+4, ... of the permutation; position 31 wraps to 0.
    for (int64_t t = 0; t < 16; ++t) {
      EXPECT_EQ(mine[static_cast<size_t>(t)], perm[static_cast<size_t>((rank + 2 * t) % kImages)]);
    }
    all.insert(all.end(), mine.begin(), mine.end());
  }
  // Together: every image, and the one padding sample (perm[0], again on rank 1) twice.
  std::map<int64_t, int> count;
  for (int64_t i : all) ++count[i];
  EXPECT_EQ(count.size(), static_cast<size_t>(kImages));
  for (const auto& [index, c] : count) EXPECT_EQ(c, index == perm[0] ? 2 : 1) << index;

  // An even split (30 of the images, 3 ranks of 10) is disjoint.
  std::vector<int64_t> thirty(perm.begin(), perm.begin() + 30);
  std::set<int64_t> union_of;
  for (int r = 0; r < 3; ++r) {
    auto shard = rank_shard(thirty, r, 3);
    EXPECT_EQ(shard.size(), 10u);
    union_of.insert(shard.begin(), shard.end());
  }
  EXPECT_EQ(union_of.size(), 30u);
}

// ------------------------------------------------------------------------------ pixels ----

TEST(LoaderPixels, EqualDecodingTheFileDirectly) {
  const Fixture& f = fixture();
  for (const std::string& path : {f.folder, f.rec_dir}) {
    LoaderOptions o = small_options(8, 3, false);
    o.pin_memory = true;  // page-locked only where CUDA is, ignored elsewhere
    Loader loader(open_source(path), o);
    int resized = 0;
    for (int64_t k = 0; k < loader.batches_per_epoch(); ++k) {
      LoadedBatch b = loader.next();
      EXPECT_EQ(b.images.is_pinned(), torch::cuda::is_available());
      for (int64_t i = 0; i < b.images.size(0); ++i) {
        const int64_t index = b.indices[i].item<int64_t>();
        const auto expected = expected_chw(f.paths[static_cast<size_t>(index)]);
        if (f.labels[static_cast<size_t>(index)] == 6) {  // 128x128 -> 112x112
          ++resized;
          const auto diff = (b.images[i].to(torch::kInt) - expected.to(torch::kInt)).abs();
          EXPECT_LE(diff.max().item<int>(), 1) << path << " sample " << index;
          EXPECT_LT(diff.to(torch::kFloat).mean().item<float>(), 0.01f) << path << " sample " << index;
        } else {
          EXPECT_TRUE(torch::equal(b.images[i], expected)) << path << " sample " << index;
        }
      }
    }
    EXPECT_EQ(resized, kPerIdentity[6]);
  }
}

namespace {

// Bilinear resize written out from its definition in double precision: output pixel o samples
// source coordinate (o + 0.5) * in / out - 0.5 (clamped at 0), between floor and floor + 1.
double exact_bilinear(const torch::Tensor& hwc, int c, int64_t oy, int64_t ox, int64_t size) {
  const auto coordinate = [size](int64_t o, int64_t in) {
    const double src = std::max(0.0, (static_cast<double>(o) + 0.5) * static_cast<double>(in) / size - 0.5);
    const int64_t i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    return std::tuple<int64_t, int64_t, double>{i0, std::min(i0 + 1, in - 1), src - static_cast<double>(i0)};
  };
  const auto [y0, y1, ly] = coordinate(oy, hwc.size(0));
  const auto [x0, x1, lx] = coordinate(ox, hwc.size(1));
  auto at = [&](int64_t y, int64_t x) { return static_cast<double>(hwc[y][x][c].item<uint8_t>()); };
  return (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
}

}  // namespace

TEST(LoaderPixels, ImageToChwResizesBilinear) {
  torch::manual_seed(5);
  const std::pair<int, int> shapes[] = {{128, 128}, {250, 250}, {96, 80}, {40, 200}, {1, 1}, {113, 112}};
  for (auto [w, h] : shapes) {
    image::Image img(w, h, 3);
    auto noise = torch::randint(0, 256, {h, w, 3}, torch::kUInt8);
    std::memcpy(img.pixels.data(), noise.data_ptr<uint8_t>(), img.pixels.size());
    std::vector<uint8_t> out(3 * kS * kS);
    image_to_chw(img, kS, out.data());
    // Against the exact value: rounded to nearest, halves up; values within float noise of a
    // half may go either way.
    int64_t checked = 0, wrong = 0;
    for (int c = 0; c < 3; ++c) {
      for (int64_t y = 0; y < kS; y += 3) {
        for (int64_t x = 0; x < kS; x += 3) {
          const double exact = exact_bilinear(noise, c, y, x, kS);
          const int got = out[static_cast<size_t>((c * kS + y) * kS + x)];
          const bool near_half = std::abs(exact - std::floor(exact) - 0.5) < 1e-3;
          wrong += near_half ? std::abs(got - exact) > 0.5 + 1e-3 : got != static_cast<int>(std::floor(exact + 0.5));
          ++checked;
        }
      }
    }
    EXPECT_EQ(wrong, 0) << w << "x" << h << ": " << wrong << " of " << checked;
    // And within one level of libtorch's bilinear interpolate everywhere (its float weights put
    // some exact halves on the other side).
    namespace F = torch::nn::functional;
    auto reference = F::interpolate(noise.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat),
                                    F::InterpolateFuncOptions()
                                        .size(std::vector<int64_t>{kS, kS})
                                        .mode(torch::kBilinear)
                                        .align_corners(false))
                         .squeeze(0);
    auto got = torch::from_blob(out.data(), {3, kS, kS}, torch::kUInt8).to(torch::kFloat);
    EXPECT_LE((got - reference).abs().max().item<float>(), 0.5f + 1e-3f) << w << "x" << h;
  }
  // Gray: the one plane three times; 112x112 RGB: a plain transpose.
  image::Image gray(kS, kS, 1);
  for (size_t i = 0; i < gray.pixels.size(); ++i) gray.pixels[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> out(3 * kS * kS);
  image_to_chw(gray, kS, out.data());
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_EQ(std::memcmp(out.data() + c * kS * kS, gray.pixels.data(), kS * kS), 0) << c;
  }
  image::Image rgb(kS, kS, 3);
  rgb.at(5, 9, 0) = 10;
  rgb.at(5, 9, 1) = 20;
  rgb.at(5, 9, 2) = 30;
  image_to_chw(rgb, kS, out.data());
  EXPECT_EQ(out[9 * kS + 5], 10);
  EXPECT_EQ(out[kS * kS + 9 * kS + 5], 20);
  EXPECT_EQ(out[2 * kS * kS + 9 * kS + 5], 30);
}

// ------------------------------------------------------------------------------ bad images ----

namespace {

int64_t index_ending_with(const ImageSource& source, const std::string& suffix) {
  for (int64_t i = 0; i < source.size(); ++i) {
    const std::string d = source.describe(i);
    if (d.size() >= suffix.size() && d.compare(d.size() - suffix.size(), suffix.size(), suffix) == 0) return i;
  }
  return -1;
}

// Batches before the corrupt image's come out; its batch throws an InputError naming it, and so
// does every later call; the destructor returns.
void expect_error_at_the_bad_batch(const std::string& path, int64_t bad, const std::string& name) {
  auto source = open_source(path);
  ASSERT_GE(bad, 0);
  const auto perm = epoch_permutation(source->size(), 42, 0);
  const int64_t bad_batch = (std::find(perm.begin(), perm.end(), bad) - perm.begin()) / 4;
  auto loader = std::make_unique<Loader>(source, small_options(4, 2, false));
  for (int64_t k = 0; k < bad_batch; ++k) EXPECT_NO_THROW(loader->next()) << k;
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      loader->next();
      ADD_FAILURE() << "no error for the corrupt image";
    } catch (const InputError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(name), std::string::npos) << message;
      EXPECT_NE(message.find("JPEG"), std::string::npos) << message;
      EXPECT_NE(message.find("skip_bad"), std::string::npos) << message;
    }
  }
  finishes_within(20s, "destroying a loader stopped by a bad image", [&] { loader.reset(); });
}

}  // namespace

TEST(LoaderBadImages, CorruptJpegStopsWithAnErrorNamingIt) {
  const Fixture& f = fixture();
  const int64_t bad = index_ending_with(*open_source(f.bad_folder), "zz_corrupt.jpg");
  expect_error_at_the_bad_batch(f.bad_folder, bad, f.bad_folder + "/id1/zz_corrupt.jpg");
  // Packed: the record is named by file and key (samples keep the folder's order, keys from 1).
  expect_error_at_the_bad_batch(f.bad_rec, bad, "train.rec: key " + std::to_string(bad + 1) + " at offset");
}

TEST(LoaderBadImages, SeekClearsAStoppedPipeline) {
  auto source = open_source(fixture().bad_folder);
  Loader loader(source, small_options(4, 2, false));
  bool failed = false;
  for (int64_t k = 0; k < loader.batches_per_epoch() && !failed; ++k) {
    try {
      loader.next();
    } catch (const InputError&) {
      failed = true;
    }
  }
  ASSERT_TRUE(failed);
  loader.seek(0);
  EXPECT_EQ(loader.next().global, 0);
}

TEST(LoaderBadImages, SkipBadReplacesAndCounts) {
  auto source = open_source(fixture().bad_folder);
  const int64_t bad = index_ending_with(*source, "zz_corrupt.jpg");
  std::vector<std::vector<LoadedBatch>> runs;
  for (int threads : {1, 3}) {
    LoaderOptions o = small_options(4, threads, false);
    o.skip_bad = true;
    Loader loader(source, o);
    std::vector<LoadedBatch> epoch;
    int64_t substituted = 0;
    for (int64_t k = 0; k < loader.batches_per_epoch(); ++k) {
      LoadedBatch b = loader.next();
      EXPECT_EQ(b.images.size(0), k + 1 < loader.batches_per_epoch() ? 4 : (source->size() - 1) % 4 + 1);
      auto idx = as_vector(b.indices);
      EXPECT_EQ(std::count(idx.begin(), idx.end(), bad), 0);
      for (int64_t i = 0; i < b.labels.numel(); ++i) EXPECT_EQ(b.labels[i].item<int64_t>(), source->label(idx[i]));
      substituted += b.substituted;
      epoch.push_back(b);
    }
    EXPECT_EQ(substituted, 1);  // the bad image is once in the epoch
    EXPECT_EQ(loader.bad_images(), 1);
    runs.push_back(std::move(epoch));
  }
  for (size_t k = 0; k < runs[0].size(); ++k) expect_same_batch(runs[0][k], runs[1][k]);
}

// ------------------------------------------------------------------------------ lifetime ----

TEST(LoaderLifetime, PrefetchIsBoundedAndDestructionIsPrompt) {
  auto counting = std::make_shared<CountingSource>(open_source(fixture().folder), 0ms);
  LoaderOptions o = small_options(4, 2, true);
  o.prefetch_batches = 3;
  auto loader = std::make_unique<Loader>(counting, o);
  loader->next();
  // After one batch taken, workers fill batches 1..3 and then must wait: 16 reads, no more.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (counting->reads.load() < 16 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(counting->reads.load(), 16);
  finishes_within(20s, "destroying a loader with a full queue", [&] { loader.reset(); });
}

TEST(LoaderLifetime, DestructionMidDecodeIsPrompt) {
  // A slow disk (50 ms a read): the workers are inside reads when the loader goes away.
  auto slow = std::make_shared<CountingSource>(open_source(fixture().folder), 50ms);
  LoaderOptions o = small_options(16, 3, true);
  o.prefetch_batches = 4;
  auto loader = std::make_unique<Loader>(slow, o);
  std::this_thread::sleep_for(50ms);
  finishes_within(20s, "destroying a loader mid-decode", [&] { loader.reset(); });
  EXPECT_LT(slow->reads.load(), 64);  // it stopped before filling the ring (4 x 16 reads, >= 1 s)
}

TEST(LoaderOptionsCheck, ImpossibleOptionsAreErrors) {
  auto source = open_source(fixture().folder);
  LoaderOptions o = small_options(8, 1, true);
  o.rank = 2;
  o.world_size = 2;
  EXPECT_THROW((Loader{source, o}), ConfigError);
  o = small_options(0, 1, true);
  EXPECT_THROW((Loader{source, o}), ConfigError);
  o = small_options(8, 0, true);
  EXPECT_THROW((Loader{source, o}), ConfigError);
  // 31 images over 4 ranks = 8 each: no full batch of 16 under drop_last.
  o = small_options(16, 1, true);
  o.world_size = 4;
  try {
    Loader loader(source, o);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than one batch"), std::string::npos) << e.what();
  }
  o.drop_last = false;
  Loader partial(source, o);
  EXPECT_EQ(partial.batches_per_epoch(), 1);
  EXPECT_EQ(partial.next().images.size(0), 8);
}
