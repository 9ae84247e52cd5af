#pragma once
// Writes a finite `synth` dataset to disk as an image folder (root/<identity>/<sample>.png), so
// that it can be packed into a .rec (arcforge pack) and trained on through the real-data loader.
// The folder's image n (identities sorted by name, then files) is identity n / S, sample n % S:
// exactly the numbering of a finite synth dataset in the trainer (SynthBatches), and PNG keeps
// the 8-bit pixels exactly, so data.synth_uint8 = true trains on the same pixels.
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "train/data/synth.hpp"

namespace arcforge::data {

struct SynthExportSummary {
  int64_t identities = 0;
  int64_t images = 0;
  int64_t bytes = 0;  // of the PNG files written
};

// Renders num_identities x samples_per_identity images in batches on `device` and writes them
// under `root` (created; an existing non-empty root is an InputError, so nothing is overwritten).
SynthExportSummary export_synth_folder(const SynthOptions& options, int64_t samples_per_identity,
                                       const std::string& root, torch::Device device = torch::kCPU);

}  // namespace arcforge::data
