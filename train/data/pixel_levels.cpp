#include "train/data/pixel_levels.hpp"

#include <ATen/Parallel.h>

namespace arcforge::data {
namespace {

// Elements per parallel chunk: a few images' worth, so threads are not woken for tiny tensors.
constexpr int64_t kGrain = 1 << 16;

bool cpu_float32(const torch::Tensor& t) {
  return t.is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous();
}

// The same float operations, in the same order, as (x * 255 - 127.5) / 127.5 on a float tensor.
void network_input_values(const float* src, float* dst, int64_t count) {
  at::parallel_for(0, count, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] = (src[i] * 255.0f - 127.5f) / 127.5f;
  });
}

}  // namespace

torch::Tensor to_network_input(const torch::Tensor& rgb01) {
  if (!cpu_float32(rgb01)) return (rgb01 * 255.0 - 127.5) / 127.5;
  torch::Tensor out = torch::empty_like(rgb01);
  network_input_values(rgb01.data_ptr<float>(), out.data_ptr<float>(), rgb01.numel());
  return out;
}

torch::Tensor& to_network_input_(torch::Tensor& rgb01) {
  if (!cpu_float32(rgb01)) return rgb01.mul_(255.0).sub_(127.5).div_(127.5);
  network_input_values(rgb01.data_ptr<float>(), rgb01.data_ptr<float>(), rgb01.numel());
  return rgb01;
}

torch::Tensor uint8_to_unit(const torch::Tensor& pixels) {
  TORCH_CHECK(pixels.scalar_type() == torch::kUInt8, "uint8_to_unit: expected uint8 pixels, got ",
              pixels.scalar_type());
  if (!pixels.is_cpu() || !pixels.is_contiguous()) return pixels.to(torch::kFloat).div_(255.0);
  torch::Tensor out = torch::empty(pixels.sizes(), pixels.options().dtype(torch::kFloat));
  const uint8_t* src = pixels.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, pixels.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] = static_cast<float>(src[i]) / 255.0f;
  });
  return out;
}

torch::Tensor to_uint8_levels(const torch::Tensor& rgb01) {
  return (rgb01 * 255.0).round_().clamp_(0, 255).div_(255.0);
}

}  // namespace arcforge::data
