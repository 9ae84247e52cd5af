#pragma once
// The CPU kernels of augment_batch for float32 batches: the same ops as the tensor-op path in
// augment.cpp (geometry, colour, gray, erase; down-up and blur stay tensor ops), written as one
// loop per sample so that a 112x112 image is read and written a few times instead of once per
// small tensor op. They agree with the tensor-op path to float rounding (a few 1e-7 on [0,1]
// pixels), are deterministic, and touch only the sample they are given, so a sample's result
// does not depend on the batch or the thread count.
#include <cstdint>

#include "train/data/augment.hpp"

namespace arcforge::data::cpu {

// dst = src mirrored, warped (bilinear, black border: grid_sample with zeros padding,
// align_corners = false) or copied, as p's geometry says. src and dst: [3,H,W], not aliased.
void geometry(const float* src, float* dst, int64_t height, int64_t width, const SampleAugment& p);

// In place on one [3,H,W] image: torchvision's brightness, contrast, saturation (when
// p.needs_color()), then gray (p.gray), then erasing (p.erase).
void pixel_ops(float* image, int64_t height, int64_t width, const SampleAugment& p);

}  // namespace arcforge::data::cpu
