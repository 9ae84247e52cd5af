#pragma once
// Renders a batch of `synth` scenes with tensor ops on any device: composite the separable layers
// front to back on the canonical canvas, shade, resample for the pose, blur, add noise.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "train/data/synth_scene.hpp"

namespace arcforge::data::synth {

// scenes: one per image, all with the same layer list (names and factor kinds); image_size: S.
// noise_bank: 1-D float32 standard normals on `device`, at least 3*S*S + 1 long; each image adds
// the window starting at its noise_offset (modulo the number of windows).
// Returns [N,3,S,S] float32 RGB in [0,1] on `device`. Each image depends only on its own scene:
// the ops are per pixel, and layer windows only skip pixels whose coverage is exactly zero.
torch::Tensor render_scenes(const std::vector<Scene>& scenes, int64_t image_size,
                            const torch::Tensor& noise_bank, torch::Device device);

// The standard-normal bank render_scenes draws noise from, generated on the CPU from a fixed key
// (so identical on every device), long enough for images of `image_size`.
torch::Tensor make_noise_bank(int64_t image_size);

}  // namespace arcforge::data::synth
