// `arcforge augment-preview`: a PNG grid that shows what an augmentation setting does to 112x112
// faces -- the sources on the top row, one row of augmented variants per batch index below.
// Sources are synth renders, or the first images (sorted by path) under a folder.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "arcforge/common/parallel.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/common/npy.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/image/image.hpp"
#include "commands.hpp"
#include "train/data/augment.hpp"
#include "train/data/synth.hpp"
#include "train/train/trainer.hpp"

namespace arcforge::cli {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kSide = 112;   // the recognizer's input size
constexpr int64_t kGap = 4;      // white space between tiles
constexpr int64_t kMaxTiles = 4096;

struct PreviewArgs {
  std::string preset = "article";
  std::vector<std::string> sets;
  std::string images_dir;
  int64_t synth_identities = 0;  // 0 = one identity per column
  int64_t count = 8;
  int64_t variants = 3;
  std::string out;
  std::string npy;  // optional: the augmented rows as float32, for numeric comparisons
  uint64_t seed = 0;
  std::string device = "cpu";
  int threads = 0;
  bool json = false;
};

bool has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".webp";
}

// [3,H,W] float in [0,1] from an 8-bit RGB image.
torch::Tensor to_tensor(const image::Image& img) {
  auto hwc = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {img.height, img.width, 3}, torch::kUInt8);
  return hwc.permute({2, 0, 1}).to(torch::kFloat32).div(255.0);
}

// Centre square crop, then to kSide x kSide (area when shrinking, bilinear when enlarging).
torch::Tensor to_square_side(const torch::Tensor& chw) {
  const int64_t h = chw.size(1), w = chw.size(2), side = std::min(h, w);
  auto square = chw.narrow(1, (h - side) / 2, side).narrow(2, (w - side) / 2, side).unsqueeze(0);
  if (side == kSide) return square.squeeze(0);
  auto options = F::InterpolateFuncOptions().size(std::vector<int64_t>{kSide, kSide});
  if (side > kSide) {
    options.mode(torch::kArea);
  } else {
    options.mode(torch::kBilinear).align_corners(false);
  }
  return F::interpolate(square, options).clamp(0, 1).squeeze(0);
}

torch::Tensor load_folder(const std::string& dir, int64_t count) {
  if (!std::filesystem::is_directory(dir)) throw InputError(file_message(dir, "not a directory"));
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && has_image_extension(entry.path())) files.push_back(entry.path());
  }
  if (files.empty()) throw InputError(file_message(dir, "no .jpg/.jpeg/.png/.webp images"));
  std::sort(files.begin(), files.end());
  files.resize(std::min<size_t>(files.size(), static_cast<size_t>(count)));
  std::vector<torch::Tensor> images;
  for (const auto& path : files) {
    const image::Image decoded = image::decode_file(path.string());
    images.push_back(to_square_side(to_tensor(decoded)));
  }
  return torch::stack(images);
}

torch::Tensor render_synth(int64_t identities, int64_t count) {
  data::SynthFaces synth(data::SynthOptions{identities, 0, kSide});
  std::vector<int64_t> ids, samples;
  for (int64_t i = 0; i < count; ++i) {
    ids.push_back(i % identities);
    samples.push_back(i / identities);
  }
  return synth.render(torch::tensor(ids, torch::kInt64), torch::tensor(samples, torch::kInt64));
}

// [N,3,S,S] in [0,1] -> [N,S,S,3] bytes.
torch::Tensor to_bytes_hwc(const torch::Tensor& images) {
  return images.to(torch::kCPU, torch::kFloat32).mul(255.0).round().clamp(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1});
}

void run(const PreviewArgs& a) {
  at::set_num_threads(worker_count(a.threads));
  if (a.count < 1 || a.variants < 0 || (a.variants + 1) * a.count > kMaxTiles)
    throw InputError("augment-preview: --count must be >= 1 and --variants >= 0, with at most " +
                     std::to_string(kMaxTiles) + " tiles in all");
  data::AugmentOptions options = data::augment_preset(a.preset);
  for (const std::string& assignment : a.sets) {
    const size_t eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError("augment-preview: --set '" + assignment + "' is not of the form key=value");
    data::set_augment_option(options, assignment.substr(0, eq), assignment.substr(eq + 1));
  }
  const data::Augmenter augmenter(options, a.seed);
  const torch::Device device = train::resolve_device(a.device);

  const torch::Tensor sources =
      a.images_dir.empty() ? render_synth(a.synth_identities > 0 ? a.synth_identities : a.count, a.count)
                           : load_folder(a.images_dir, a.count);
  const int64_t columns = sources.size(0), rows = 1 + a.variants;
  const int64_t width = kGap + columns * (kSide + kGap), height = kGap + rows * (kSide + kGap);
  auto canvas = torch::full({height, width, 3}, 255, torch::kUInt8);
  const auto on_device = sources.to(device);
  std::vector<torch::Tensor> augmented;
  for (int64_t row = 0; row < rows; ++row) {
    // Row 0 shows the sources; row r shows batch index r - 1.
    if (row > 0) augmented.push_back(augmenter.apply(on_device, row - 1).to(torch::kCPU, torch::kFloat32));
    const auto tiles = to_bytes_hwc(row == 0 ? sources : augmented.back());
    for (int64_t col = 0; col < columns; ++col) {
      canvas.narrow(0, kGap + row * (kSide + kGap), kSide).narrow(1, kGap + col * (kSide + kGap), kSide).copy_(tiles[col]);
    }
  }
  image::Image grid(static_cast<int>(width), static_cast<int>(height), 3);
  std::memcpy(grid.pixels.data(), canvas.contiguous().data_ptr<uint8_t>(), grid.pixels.size());
  image::write_png(a.out, grid);
  if (!a.npy.empty()) {
    const auto values = augmented.empty() ? torch::zeros({0, columns, 3, kSide, kSide})
                                          : torch::stack(augmented).contiguous();
    write_npy(a.npy, values.sizes().vec(), values.data_ptr<float>());
  }

  if (a.json) {
    const nlohmann::ordered_json out = {{"out", a.out},         {"images", columns}, {"variants", a.variants},
                                        {"width", width},       {"height", height},  {"preset", a.preset},
                                        {"seed", a.seed},       {"device", device.str()}};
    std::cout << out.dump() << std::endl;
  } else {
    std::cout << "wrote " << a.out << " (" << width << "x" << height << "): " << columns << " sources, "
              << a.variants << " augmented rows, preset " << a.preset << "\n";
  }
}

}  // namespace

void add_augment_preview_command(CLI::App& app) {
  auto args = std::make_shared<PreviewArgs>();
  CLI::App* cmd = app.add_subcommand("augment-preview", "Write a PNG grid of augmented training images");
  std::string presets;
  for (const std::string& n : data::augment_preset_names()) presets += (presets.empty() ? "" : " | ") + n;
  std::string keys;
  for (const std::string& k : data::augment_option_keys()) keys += (keys.empty() ? "" : " ") + k;
  cmd->add_option("--preset", args->preset, "Starting point: " + presets + " (default article)");
  cmd->add_option("--set", args->sets, "Override an option, key=value (repeatable); keys: " + keys);
  auto* images = cmd->add_option("--images", args->images_dir,
                                 "Folder of images (searched recursively, first --count by path); "
                                 "centre-cropped and resized to 112x112");
  auto* synth = cmd->add_option("--synth-identities", args->synth_identities,
                                "Render synth faces of this many identities (the default source; default: --count)");
  images->excludes(synth);
  cmd->add_option("--count", args->count, "Source images, one grid column each (default 8)");
  cmd->add_option("--variants", args->variants, "Augmented rows below the sources (default 3)");
  cmd->add_option("--out", args->out, "PNG file to write")->required();
  cmd->add_option("--npy", args->npy,
                  "Also write the augmented rows as float32 .npy [variants, count, 3, 112, 112]");
  cmd->add_option("--seed", args->seed, "Augmentation seed (default 0)");
  cmd->add_option("--device", args->device, "cpu | cuda | auto (default cpu)");
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
