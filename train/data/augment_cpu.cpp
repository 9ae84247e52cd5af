#include "train/data/augment_cpu.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace arcforge::data::cpu {
namespace {

// ITU-R 601 luma, the weights of torchvision's rgb_to_grayscale (as augment.cpp's luma()).
constexpr float kR = 0.299f, kG = 0.587f, kB = 0.114f;

inline float clamp01(float v) { return std::min(std::max(v, 0.0f), 1.0f); }

// floor() for the positions a warp can reach (|v| < 2^30): truncation shifted to positive numbers,
// since without SSE4.1 std::floor is a library call per pixel.
inline int64_t floor_to_int(double v) {
  constexpr double kShift = 1 << 30;
  return static_cast<int64_t>(v + kShift) - static_cast<int64_t>(kShift);
}

// Sum of luma over a row, in four interleaved float partial sums (a fixed order: deterministic,
// and not one long dependency chain), returned in double.
inline double luma_row_sum(const float* r, const float* g, const float* b, int64_t n) {
  float part[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) part[k] += r[i + k] * kR + g[i + k] * kG + b[i + k] * kB;
  for (; i < n; ++i) part[0] += r[i] * kR + g[i] * kG + b[i] * kB;
  return static_cast<double>(part[0]) + part[1] + part[2] + part[3];
}

[[gnu::always_inline]] inline void mirror(const float* src, float* dst, int64_t height, int64_t width) {
  for (int64_t row = 0; row < 3 * height; ++row) {
    const float* in = src + row * width;
    float* out = dst + row * width;
    for (int64_t x = 0; x < width; ++x) out[x] = in[width - 1 - x];
  }
}

// Bilinear sampling of the three planes at the input positions of inverse_warp_matrix. Per output
// pixel the position and weights are computed once for the three channels; pixels whose four taps
// are all inside take the branch-free path, the border the checked one (outside taps read 0).
[[gnu::always_inline]] inline void warp(const float* src, float* dst, int64_t height, int64_t width, const SampleAugment& p) {
  const std::vector<double> m = inverse_warp_matrix(p, height, width);
  const double cx = 0.5 * static_cast<double>(width - 1), cy = 0.5 * static_cast<double>(height - 1);
  const int64_t plane = height * width;
  for (int64_t oy = 0; oy < height; ++oy) {
    const double yc = static_cast<double>(oy) - cy;
    // Input position of output (ox, oy) = row start + ox * (m0, m3), in input pixel coordinates.
    const double x_start = m[0] * -cx + m[1] * yc + m[2] + cx, y_start = m[3] * -cx + m[4] * yc + m[5] + cy;
    float* out = dst + oy * width;
    for (int64_t ox = 0; ox < width; ++ox) {
      const double ix = x_start + m[0] * static_cast<double>(ox), iy = y_start + m[3] * static_cast<double>(ox);
      const int64_t x0 = floor_to_int(ix), y0 = floor_to_int(iy);
      const auto ax = static_cast<float>(ix - static_cast<double>(x0)), ay = static_cast<float>(iy - static_cast<double>(y0));
      const float w00 = (1 - ax) * (1 - ay), w01 = ax * (1 - ay), w10 = (1 - ax) * ay, w11 = ax * ay;
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < width && y0 + 1 < height) {
        const float* tap = src + y0 * width + x0;
        for (int64_t c = 0; c < 3; ++c, tap += plane)
          out[c * plane + ox] = clamp01(w00 * tap[0] + w01 * tap[1] + w10 * tap[width] + w11 * tap[width + 1]);
        continue;
      }
      const bool in_x0 = x0 >= 0 && x0 < width, in_x1 = x0 + 1 >= 0 && x0 + 1 < width;
      const bool in_y0 = y0 >= 0 && y0 < height, in_y1 = y0 + 1 >= 0 && y0 + 1 < height;
      for (int64_t c = 0; c < 3; ++c) {
        const float* base = src + c * plane;
        float v = 0;
        if (in_y0 && in_x0) v += w00 * base[y0 * width + x0];
        if (in_y0 && in_x1) v += w01 * base[y0 * width + x0 + 1];
        if (in_y1 && in_x0) v += w10 * base[(y0 + 1) * width + x0];
        if (in_y1 && in_x1) v += w11 * base[(y0 + 1) * width + x0 + 1];
        out[c * plane + ox] = clamp01(v);
      }
    }
  }
}

// torchvision's adjust_brightness, adjust_contrast (blend with the mean luma of the image) and
// adjust_saturation (blend with the pixel's luma), each clamped, in that order.
[[gnu::always_inline]] inline void colour(float* image, int64_t height, int64_t width, const SampleAugment& p) {
  const int64_t plane = height * width;
  float *r = image, *g = image + plane, *b = image + 2 * plane;
  const auto fb = static_cast<float>(p.brightness), fc = static_cast<float>(p.contrast),
             fs = static_cast<float>(p.saturation);
  for (int64_t i = 0; i < 3 * plane; ++i) image[i] = clamp01(image[i] * fb);
  double luma_sum = 0;
  for (int64_t y = 0; y < height; ++y) luma_sum += luma_row_sum(r + y * width, g + y * width, b + y * width, width);
  const auto mean = static_cast<float>(luma_sum / static_cast<double>(plane));
  const float contrast_offset = (1 - fc) * mean;
  for (int64_t i = 0; i < plane; ++i) {
    const float cr = clamp01(fc * r[i] + contrast_offset), cg = clamp01(fc * g[i] + contrast_offset),
                cb = clamp01(fc * b[i] + contrast_offset);
    const float saturation_offset = (1 - fs) * (cr * kR + cg * kG + cb * kB);
    r[i] = clamp01(fs * cr + saturation_offset);
    g[i] = clamp01(fs * cg + saturation_offset);
    b[i] = clamp01(fs * cb + saturation_offset);
  }
}

[[gnu::always_inline]] inline void gray(float* image, int64_t height, int64_t width) {
  const int64_t plane = height * width;
  float *r = image, *g = image + plane, *b = image + 2 * plane;
  for (int64_t i = 0; i < plane; ++i) r[i] = g[i] = b[i] = clamp01(r[i] * kR + g[i] * kG + b[i] * kB);
}

[[gnu::always_inline]] inline void erase(float* image, int64_t height, int64_t width, const SampleAugment& p) {
  const EraseBox box = erase_box(p, height, width);
  const int64_t plane = height * width;
  float mean[3] = {0, 0, 0};
  torch::Tensor noise;
  if (p.erase_fill == EraseFill::mean) {
    for (int64_t c = 0; c < 3; ++c) {
      double sum = 0;
      for (int64_t i = 0; i < plane; ++i) sum += static_cast<double>(image[c * plane + i]);
      mean[c] = static_cast<float>(sum / static_cast<double>(plane));
    }
  } else if (p.erase_fill == EraseFill::noise) {
    // The whole image's worth of draws, as the tensor-op path makes them, so both fill the box
    // with the same values.
    noise = torch::empty({3, height, width}, torch::kFloat32);
    auto generator = at::detail::createCPUGenerator(p.erase_noise_seed);
    noise.uniform_(0, 1, generator);
  }
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t y = box.top; y < box.top + box.height; ++y) {
      float* row = image + c * plane + y * width + box.left;
      if (p.erase_fill == EraseFill::noise) {
        std::memcpy(row, noise.data_ptr<float>() + c * plane + y * width + box.left,
                    static_cast<size_t>(box.width) * sizeof(float));
      } else {
        std::fill(row, row + box.width, p.erase_fill == EraseFill::mean ? mean[c] : 0.0f);
      }
    }
  }
}

}  // namespace

// Compiled twice: for AVX2 (the loops vectorise 8 wide) and for the baseline, picked at load time
// by the CPU. (Not x86-64-v3: some VMs hide LZCNT, and its resolver then falls back to baseline.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ARCFORGE_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ARCFORGE_CPU_CLONES
#endif

ARCFORGE_CPU_CLONES void geometry(const float* src, float* dst, int64_t height, int64_t width, const SampleAugment& p) {
  if (p.needs_warp()) {
    warp(src, dst, height, width, p);
  } else if (p.flip) {
    mirror(src, dst, height, width);
  } else {
    std::memcpy(dst, src, static_cast<size_t>(3 * height * width) * sizeof(float));
  }
}

ARCFORGE_CPU_CLONES void pixel_ops(float* image, int64_t height, int64_t width, const SampleAugment& p) {
  if (p.needs_color()) colour(image, height, width, p);
  if (p.gray) gray(image, height, width);
  if (p.erase) erase(image, height, width, p);
}

}  // namespace arcforge::data::cpu
