#pragma once
// Running statistics for an untrained backbone. Straight from its initialiser, a backbone's
// eval-mode activations have no sensible scale (IResNet's grow to ~1e7, MobileFaceNet's shrink
// into float denormals, which are slow on every CPU runtime), so `arcforge export --random-init`
// first sets each batch norm's running mean and variance to the statistics of one seeded batch of
// uniform [-1, 1) images, as training would. Weights are not touched.
#include <cstdint>

#include "train/nn/backbone.hpp"

namespace arcforge::onnx_io {

// Train-mode forward (no gradients) with every batch norm's momentum at 1; restores the momenta and
// leaves the backbone in eval mode. batch must be at least 2 (BatchNorm1d needs it).
void calibrate_batch_norm_statistics(nn::Backbone& backbone, uint64_t seed, int64_t batch = 4);

}  // namespace arcforge::onnx_io
