// loader_bench: how many images per second the training loader decodes (JPEG bytes -> [3,S,S]
// uint8 batch), per core, on InsightFace-shaped data: 112x112 synth faces, JPEG quality 95,
// packed into a .rec in a temp folder.
//
//   loader_bench [images=2000] [epochs=3] [threads=1,2] [pin]
//
// Prints JSON lines: the machine, then
//   decode_only  one thread decoding records already in memory (codec + HWC->CHW, no loader);
//   decode_augment_<preset>  the same thread also augmenting each batch of 128 on the CPU as a
//                CPU trainer does (to float, augment with the preset, to network input);
//   loader       the Loader end to end (pread from the .rec, decode, batch) with each listed
//                worker count, batch 128, prefetch 4, drop_last (`pin`: pin_memory, which takes
//                effect where CUDA is; "pinned" says whether the batches were page-locked);
// each with images/s, images/s per worker thread, and the cores that rate needs to feed a GPU
// training at 3500 img/s (r50 bf16 on one H200).
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <thread>

#include "bench_machine.hpp"
#include "arcforge/common/atomic_file.hpp"
#include "arcforge/data/image_folder.hpp"
#include "arcforge/image/codec.hpp"
#include "train/data/augment.hpp"
#include "train/data/image_source.hpp"
#include "train/data/loader.hpp"
#include "train/data/synth.hpp"

using namespace arcforge;
namespace fs = std::filesystem;

namespace {

constexpr double kGpuImagesPerSecond = 3500.0;  // r50 bf16 training on one H200
constexpr int64_t kImagesPerIdentity = 10;

// root/<identity>/<n>.jpg of 112x112 synth faces, then root.rec; returns the .rec path.
std::string make_dataset(const std::string& dir, int64_t images) {
  const std::string root = dir + "/faces";
  const int64_t identities = (images + kImagesPerIdentity - 1) / kImagesPerIdentity;
  data::SynthFaces faces(data::SynthOptions{identities, 1, 112});
  const torch::Device device = torch::cuda::is_available() ? torch::kCUDA : torch::kCPU;  // render fast
  int64_t written = 0;
  for (int64_t id = 0; id < identities && written < images; ++id) {
    const int64_t n = std::min(kImagesPerIdentity, images - written);
    auto rgb = faces.render(torch::full({n}, id, torch::kInt64), torch::arange(n, torch::kInt64), device).cpu();
    auto hwc = (rgb * 255).round().clamp(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
    char name[32];
    std::snprintf(name, sizeof name, "%06lld", static_cast<long long>(id));
    fs::create_directories(root + "/" + name);
    for (int64_t j = 0; j < n; ++j, ++written) {
      image::Image img(112, 112, 3);
      std::memcpy(img.pixels.data(), hwc[j].data_ptr<uint8_t>(), img.pixels.size());
      std::ofstream(root + "/" + name + "/" + std::to_string(j) + ".jpg", std::ios::binary)
          << image::encode_jpeg(img, 95);
    }
  }
  const std::string rec = dir + "/train.rec";
  data::pack_image_folder(data::scan_image_folder(root), rec);
  fs::remove_all(root);
  return rec;
}

void print_result(const char* mode, int threads, int64_t images, double seconds, bool pinned = false) {
  const double rate = static_cast<double>(images) / seconds;
  const double per_core = rate / threads;
  std::printf(
      "{\"bench\":\"loader\",\"mode\":\"%s\",\"threads\":%d,\"images\":%lld,\"seconds\":%.3f,"
      "\"images_per_s\":%.1f,\"images_per_s_per_thread\":%.1f,\"cores_for_%.0f_img_s\":%.2f,"
      "\"pinned\":%s,\"load_average\":\"%s\"}\n",
      mode, threads, static_cast<long long>(images), seconds, rate, per_core, kGpuImagesPerSecond,
      kGpuImagesPerSecond / per_core, pinned ? "true" : "false", bench::load_average().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t images = argc > 1 ? std::atoll(argv[1]) : 2000;
  const int64_t epochs = argc > 2 ? std::atoll(argv[2]) : 3;
  std::vector<int> thread_counts;
  for (std::stringstream list(argc > 3 ? argv[3] : "1,2"); list.good();) {
    std::string item;
    std::getline(list, item, ',');
    thread_counts.push_back(std::atoi(item.c_str()));
  }
  const bool pin = argc > 4 && std::string(argv[4]) == "pin";
  if (images < 128 || epochs < 1 || *std::min_element(thread_counts.begin(), thread_counts.end()) < 1) {
    std::fprintf(stderr, "usage: loader_bench [images>=128] [epochs>=1] [threads=1,2] [pin]\n");
    return 2;
  }
  std::printf("{\"bench\":\"loader\",\"machine\":\"%s\",\"cores\":%u,\"load_average\":\"%s\"}\n",
              bench::cpu_model_name().c_str(), std::thread::hardware_concurrency(),
              bench::load_average().c_str());

  const std::string dir = (fs::temp_directory_path() / ("arcforge_loader_bench_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const std::string rec = make_dataset(dir, images);
  at::set_num_threads(1);  // the loader's workers run no torch ops; keep libtorch's pool out of the way
  auto source = std::shared_ptr<const data::ImageSource>(data::open_image_source(rec));
  std::fprintf(stderr, "dataset: %s, %.1f KiB per image\n", source->summary().c_str(),
               static_cast<double>(fs::file_size(rec)) / 1024.0 / static_cast<double>(images));

  using Clock = std::chrono::steady_clock;
  {  // decode_only: the per-image work of a worker, without reading or batching
    std::vector<std::string> encoded;
    for (int64_t i = 0; i < source->size(); ++i) encoded.push_back(source->read(i));
    std::vector<uint8_t> out(3 * 112 * 112);
    const auto start = Clock::now();
    int64_t done = 0;
    for (int64_t e = 0; e < epochs; ++e) {
      for (const auto& bytes : encoded) {
        data::image_to_chw(image::decode(bytes, "bench"), 112, out.data());
        ++done;
      }
    }
    print_result("decode_only", 1, done, std::chrono::duration<double>(Clock::now() - start).count());

    // decode_augment_<preset>: what a CPU trainer does per image on one core: decode into a
    // uint8 batch of 128, to float / 255, augment (CPU kernels), to network input.
    for (const char* preset : {"flip", "article", "dali"}) {
      const data::Augmenter augmenter(data::augment_preset(preset), 0);
      constexpr int64_t kBatch = 128;
      auto batch = torch::empty({kBatch, 3, 112, 112}, torch::kUInt8);
      const auto timed_start = Clock::now();
      int64_t images_done = 0, batch_index = 0;
      for (int64_t e = 0; e < epochs; ++e) {
        for (size_t first = 0; first + kBatch <= encoded.size(); first += kBatch, ++batch_index) {
          for (int64_t j = 0; j < kBatch; ++j)
            data::image_to_chw(image::decode(encoded[first + static_cast<size_t>(j)], "bench"), 112,
                               batch[j].data_ptr<uint8_t>());
          auto input = augmenter.apply(data::uint8_to_unit(batch), batch_index);
          data::to_network_input_(input);
          images_done += input.size(0);
        }
      }
      print_result((std::string("decode_augment_") + preset).c_str(), 1, images_done,
                   std::chrono::duration<double>(Clock::now() - timed_start).count());
    }
  }
  for (int threads : thread_counts) {
    data::LoaderOptions options;
    options.batch_size = 128;
    options.threads = threads;
    options.prefetch_batches = 4;
    options.pin_memory = pin;
    data::Loader loader(source, options);
    const bool pinned = loader.next().images.is_pinned();  // warm up: workers started, batches in flight
    const int64_t batches = epochs * loader.batches_per_epoch();
    const auto start = Clock::now();
    int64_t done = 0;
    for (int64_t b = 0; b < batches; ++b) done += loader.next().images.size(0);
    print_result("loader", threads, done, std::chrono::duration<double>(Clock::now() - start).count(), pinned);
  }
  fs::remove_all(dir);
  return 0;
}
