#pragma once
// Pixel value conventions between the stored 8-bit image, the [0,1] floats that augmentation works
// on, and the recognizer's input (InsightFace: (255x - 127.5) / 127.5). On the CPU, for float32
// contiguous tensors, each is one pass over the data (the tensor-op formulas take two or three, and
// a fresh batch-sized allocation each); the results are bit for bit those of the tensor ops.
#include <torch/torch.h>

namespace arcforge::data {

// Converts rendered [0,1] RGB to the recognizer input convention: (255x - 127.5) / 127.5.
torch::Tensor to_network_input(const torch::Tensor& rgb01);

// to_network_input in place, for a float tensor the caller owns (saves the batch-sized copy).
torch::Tensor& to_network_input_(torch::Tensor& rgb01);

// uint8 pixels as [0,1] floats: float(x) / 255, on the tensor's device.
torch::Tensor uint8_to_unit(const torch::Tensor& pixels);

// [0,1] RGB rounded to the 256 levels an 8-bit image stores: round(255x) / 255, bit for bit what
// the loader makes of the stored byte (uint8_to_unit).
torch::Tensor to_uint8_levels(const torch::Tensor& rgb01);

}  // namespace arcforge::data
