#include "train/data/synth_export.hpp"

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"

namespace arcforge::data {
namespace {

namespace fs = std::filesystem;

// Zero-padded to `digits`, so that sorting names sorts numbers.
std::string padded(int64_t value, int digits) {
  char text[32];
  std::snprintf(text, sizeof text, "%0*lld", digits, static_cast<long long>(value));
  return text;
}

int digits_for(int64_t count) { return static_cast<int>(std::to_string(std::max<int64_t>(count - 1, 0)).size()); }

}  // namespace

SynthExportSummary export_synth_folder(const SynthOptions& options, int64_t samples_per_identity,
                                       const std::string& root, torch::Device device) {
  if (options.num_identities < 1 || samples_per_identity < 1)
    throw ConfigError("synth export: identities and samples per identity must be positive");
  std::error_code ec;
  if (fs::exists(root) && !fs::is_empty(root, ec))
    throw InputError(root + ": exists and is not empty; synth export writes a new folder");
  const SynthFaces faces(options);
  const int id_digits = digits_for(options.num_identities), sample_digits = digits_for(samples_per_identity);
  const int64_t images = options.num_identities * samples_per_identity;
  constexpr int64_t kBatch = 256;
  SynthExportSummary summary{options.num_identities, images, 0};
  for (int64_t first = 0; first < images; first += kBatch) {
    const int64_t n = std::min(kBatch, images - first);
    const auto numbers = torch::arange(first, first + n, torch::kInt64);
    const auto identities = numbers.div(samples_per_identity, "floor"), samples = numbers.remainder(samples_per_identity);
    const auto hwc = (faces.render(identities, samples, device) * 255.0)
                         .round_()
                         .clamp_(0, 255)
                         .to(torch::kUInt8)
                         .permute({0, 2, 3, 1})
                         .contiguous()
                         .cpu();
    for (int64_t j = 0; j < n; ++j) {
      const int64_t id = (first + j) / samples_per_identity, sample = (first + j) % samples_per_identity;
      const std::string folder = root + "/" + padded(id, id_digits);
      fs::create_directories(folder);
      image::Image image(options.image_size, options.image_size, 3);
      std::memcpy(image.pixels.data(), hwc[j].data_ptr<uint8_t>(), image.pixels.size());
      const std::string path = folder + "/" + padded(sample, sample_digits) + ".png";
      image::write_png(path, image);
      summary.bytes += static_cast<int64_t>(fs::file_size(path));
    }
  }
  return summary;
}

}  // namespace arcforge::data
