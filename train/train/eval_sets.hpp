#pragma once
// Verification on real sets: InsightFace .bin files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...),
// LFW pairs.txt + image root, and CSV pair lists. Images are decoded with the core codec, taken as
// aligned faces (resized to 112x112 when they are not), embedded with flip-add, and scored with the
// InsightFace 10-fold protocol.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "arcforge/eval/verification.hpp"
#include "train/nn/backbone.hpp"

namespace arcforge::train {

struct EvalSet {
  std::string name;                                   // reported name: the file's stem ("lfw")
  std::vector<std::string> images;                    // encoded bytes (a .bin) ...
  std::vector<std::string> files;                     // ... or image paths (a pair list)
  std::vector<std::pair<int64_t, int64_t>> pairs;     // indices into images or files
  std::vector<bool> same;

  int64_t image_count() const { return static_cast<int64_t>(images.empty() ? files.size() : images.size()); }
};

// A .bin file, or a pair list (.csv, else LFW pairs.txt) whose images live under image_root (empty:
// the list's own folder). Throws InputError naming the file; a pair list with missing images is an
// error that names the first few.
EvalSet load_eval_set(const std::string& path, const std::string& image_root = "");

// Images [begin, end) of the set as network input [n,3,112,112] float ((x - 127.5) / 127.5).
torch::Tensor eval_set_images(const EvalSet& set, int64_t begin, int64_t end);

// Embeds every image once (flip-add, in batches) and runs the verification protocol on the pairs.
eval::VerificationReport evaluate_set(nn::Backbone& backbone, const EvalSet& set, torch::Device device,
                                      const std::string& precision = "fp32", int64_t batch_size = 64);

}  // namespace arcforge::train
