#pragma once
// `synth`: procedurally rendered face identities, the built-in dataset that needs no files.
// An identity is a seeded set of shape and appearance parameters; a sample adds nuisance (pose,
// lighting, expression, scale/shift, blur, noise, occlusion). Rendering is batched tensor ops, so it
// runs on the GPU when the device is CUDA. Deterministic per (seed, identity, sample).
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "train/data/pixel_levels.hpp"  // to_network_input, to_uint8_levels

namespace arcforge::data {

struct SynthOptions {
  int64_t num_identities = 1000;  // training identities are 0 .. num_identities-1
  uint64_t seed = 0;              // the dataset seed; identities differ between seeds
  int64_t image_size = 112;
};

class SynthFaces {
 public:
  explicit SynthFaces(SynthOptions options);

  // identities, samples: [N] int64 on CPU. Returns [N,3,S,S] float32 RGB in [0,1] on `device`.
  torch::Tensor render(const torch::Tensor& identities, const torch::Tensor& samples,
                       torch::Device device = torch::kCPU) const;

  // Identity ids reserved for evaluation, disjoint from every training id.
  static int64_t heldout_identity(int64_t index);

  const SynthOptions& options() const { return options_; }

 private:
  SynthOptions options_;
};

struct SynthPair {
  int64_t identity_a, sample_a, identity_b, sample_b;
  bool same;
};

// Balanced same/different pairs over `num_identities` held-out identities (seeded).
std::vector<SynthPair> make_heldout_pairs(int64_t num_pairs, int64_t num_identities, uint64_t seed);

}  // namespace arcforge::data
