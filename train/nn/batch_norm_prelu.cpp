#include "train/nn/batch_norm_prelu.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "train/nn/cpu_lanes.hpp"
#include "train/nn/prelu.hpp"
#include "train/nn/traced_op.hpp"

namespace arcforge::nn {
namespace {

using namespace lanes;  // loads, stores, Lanes, elements, dispatch_float_or_bf16


// Pixels summed in float before their sums join the thread's double sums: a float sum of 64 terms
// loses ~1e-6 of it, then nothing accumulates in float.
constexpr int64_t kBlockPixels = 64;

// acc[c] += v over the channels of one pixel, for up to three accumulators, N lanes at a time.
// The statistics pass: s[0] += x - k, s[1] += (x - k)^2 (k: a sample of each channel, so that the
// variance is not a small difference of large sums).
template <int N, typename S>
ARCFORGE_INLINE void stats_pixel(const S* __restrict x, const float* __restrict k, float* __restrict s0,
                                 float* __restrict s1, int64_t channels) {
  int64_t c = 0;
  if constexpr (N > 0) {
    for (; c + N <= channels; c += N) {
      const auto d = load_lanes<N>(x + c) - load_lanes<N>(k + c);
      store_lanes<N>(s0 + c, load_lanes<N>(s0 + c) + d);
      store_lanes<N>(s1 + c, load_lanes<N>(s1 + c) + d * d);
    }
  }
  for (; c < channels; ++c) {
    const float d = load(x[c]) - k[c];
    s0[c] += d;
    s1[c] += d * d;
  }
}

// y = z > 0 ? z : a * z, z = (x - mean) * scale + shift. (Not x * scale + (shift - mean * scale):
// that loses z's digits when the mean dwarfs the spread.)
template <int N, typename S>
ARCFORGE_INLINE void output_pixel(const S* __restrict x, S* __restrict y, const float* __restrict mean,
                                  const float* __restrict scale, const float* __restrict shift,
                                  const float* __restrict slope, int64_t channels) {
  int64_t c = 0;
  if constexpr (N > 0) {
    for (; c + N <= channels; c += N) {
      const auto z = (load_lanes<N>(x + c) - load_lanes<N>(mean + c)) * load_lanes<N>(scale + c) + load_lanes<N>(shift + c);
      store_lanes<N>(y + c, z > 0.0f ? z : load_lanes<N>(slope + c) * z);
    }
  }
  for (; c < channels; ++c) {
    const float z = (load(x[c]) - mean[c]) * scale[c] + shift[c], scaled = slope[c] * z;
    store(y[c], z > 0 ? z : scaled);
  }
}

// With g = z > 0 ? gy : a * gy (the gradient reaching BN's output): s[0] += g,
// s[1] += g * (x - mean), s[2] += z * gy where z <= 0 (the slope's gradient).
template <int N, typename S>
ARCFORGE_INLINE void gradient_sums_pixel(const S* __restrict x, const S* __restrict gy, const float* __restrict scale,
                                         const float* __restrict shift, const float* __restrict slope,
                                         const float* __restrict mean, float* __restrict s0, float* __restrict s1,
                                         float* __restrict s2, int64_t channels) {
  int64_t c = 0;
  if constexpr (N > 0) {
    using F = typename Lanes<N>::f32;
    for (; c + N <= channels; c += N) {
      const auto centred = load_lanes<N>(x + c) - load_lanes<N>(mean + c), d = load_lanes<N>(gy + c);
      const auto z = centred * load_lanes<N>(scale + c) + load_lanes<N>(shift + c);
      const auto positive = z > 0.0f;
      const F g = positive ? d : load_lanes<N>(slope + c) * d;
      store_lanes<N>(s0 + c, load_lanes<N>(s0 + c) + g);
      store_lanes<N>(s1 + c, load_lanes<N>(s1 + c) + g * centred);
      store_lanes<N>(s2 + c, load_lanes<N>(s2 + c) + (positive ? F{} : z * d));
    }
  }
  for (; c < channels; ++c) {
    const float centred = load(x[c]) - mean[c], d = load(gy[c]);
    const float z = centred * scale[c] + shift[c], scaled = slope[c] * d, negative = z * d;
    const bool positive = z > 0;
    const float g = positive ? d : scaled;
    s0[c] += g;
    s1[c] += g * centred;
    s2[c] += positive ? 0.0f : negative;
  }
}

// gx = A * g + B * (x - mean) + C0 (BN's input gradient, folded into three per-channel constants).
template <int N, typename S>
ARCFORGE_INLINE void input_gradient_pixel(const S* __restrict x, const S* __restrict gy, S* __restrict gx,
                                          const float* __restrict mean, const float* __restrict scale,
                                          const float* __restrict shift, const float* __restrict slope,
                                          const float* __restrict a, const float* __restrict b,
                                          const float* __restrict c0, int64_t channels) {
  int64_t c = 0;
  if constexpr (N > 0) {
    for (; c + N <= channels; c += N) {
      const auto centred = load_lanes<N>(x + c) - load_lanes<N>(mean + c), d = load_lanes<N>(gy + c);
      const auto z = centred * load_lanes<N>(scale + c) + load_lanes<N>(shift + c);
      const auto g = z > 0.0f ? d : load_lanes<N>(slope + c) * d;
      store_lanes<N>(gx + c, load_lanes<N>(a + c) * g + load_lanes<N>(b + c) * centred + load_lanes<N>(c0 + c));
    }
  }
  for (; c < channels; ++c) {
    const float centred = load(x[c]) - mean[c], d = load(gy[c]);
    const float z = centred * scale[c] + shift[c], scaled = slope[c] * d;
    const float g = z > 0 ? d : scaled;
    store(gx[c], a[c] * g + b[c] * centred + c0[c]);
  }
}

// Pixel ranges, one copy per instruction set with the pixel loops inlined. The summing passes add
// float block sums into the thread's double sums `total` ([k][channels]); `block` is scratch.
#define ARCFORGE_BN_PRELU_RANGES(SUFFIX, ATTRIBUTES, N)                                                        \
  template <typename S>                                                                                       \
  ATTRIBUTES void stats_range_##SUFFIX(const S* x, const float* k, int64_t channels, int64_t begin,           \
                                       int64_t end, float* block, double* total) {                            \
    for (int64_t first = begin; first < end; first += kBlockPixels) {                                         \
      std::fill(block, block + 2 * channels, 0.0f);                                                           \
      for (int64_t p = first; p < std::min(end, first + kBlockPixels); ++p)                                   \
        stats_pixel<N>(x + p * channels, k, block, block + channels, channels);                               \
      for (int64_t i = 0; i < 2 * channels; ++i) total[i] += block[i];                                        \
    }                                                                                                         \
  }                                                                                                           \
  template <typename S>                                                                                       \
  ATTRIBUTES void output_range_##SUFFIX(const S* x, S* y, const float* mean, const float* scale,              \
                                        const float* shift, const float* slope, int64_t channels,             \
                                        int64_t begin, int64_t end) {                                         \
    for (int64_t p = begin; p < end; ++p)                                                                     \
      output_pixel<N>(x + p * channels, y + p * channels, mean, scale, shift, slope, channels);               \
  }                                                                                                           \
  template <typename S>                                                                                       \
  ATTRIBUTES void gradient_sums_range_##SUFFIX(const S* x, const S* gy, const float* scale, const float* shift, \
                                               const float* slope, const float* mean, int64_t channels,       \
                                               int64_t begin, int64_t end, float* block, double* total) {     \
    for (int64_t first = begin; first < end; first += kBlockPixels) {                                         \
      std::fill(block, block + 3 * channels, 0.0f);                                                           \
      for (int64_t p = first; p < std::min(end, first + kBlockPixels); ++p)                                   \
        gradient_sums_pixel<N>(x + p * channels, gy + p * channels, scale, shift, slope, mean, block,         \
                               block + channels, block + 2 * channels, channels);                             \
      for (int64_t i = 0; i < 3 * channels; ++i) total[i] += block[i];                                        \
    }                                                                                                         \
  }                                                                                                           \
  template <typename S>                                                                                       \
  ATTRIBUTES void input_gradient_range_##SUFFIX(const S* x, const S* gy, S* gx, const float* mean,            \
                                                const float* scale, const float* shift, const float* slope,   \
                                                const float* a, const float* b, const float* c0,              \
                                                int64_t channels, int64_t begin, int64_t end) {               \
    for (int64_t p = begin; p < end; ++p)                                                                     \
      input_gradient_pixel<N>(x + p * channels, gy + p * channels, gx + p * channels, mean, scale, shift,     \
                              slope, a, b, c0, channels);                                                     \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_BN_PRELU_RANGES)
#undef ARCFORGE_BN_PRELU_RANGES

// Pixels per parallel task: enough work to amortise the scheduling.
int64_t grain_pixels(int64_t channels) { return std::max<int64_t>(kBlockPixels, 32768 / std::max<int64_t>(1, channels)); }

// Runs a summing pass over all pixels on ATen's threads and returns its `k` sums per channel.
template <typename Pass>
std::vector<double> sum_over_pixels(int64_t pixels, int64_t channels, int k, Pass&& pass) {
  const int threads = at::get_num_threads();
  std::vector<double> partial(static_cast<size_t>(threads * k * channels), 0.0);
  at::parallel_for(0, pixels, grain_pixels(channels), [&](int64_t begin, int64_t end) {
    std::vector<float> block(static_cast<size_t>(k * channels));
    pass(begin, end, block.data(), partial.data() + static_cast<int64_t>(at::get_thread_num()) * k * channels);
  });
  std::vector<double> total(static_cast<size_t>(k * channels), 0.0);
  for (int t = 0; t < threads; ++t)
    for (int64_t i = 0; i < k * channels; ++i) total[i] += partial[static_cast<size_t>(t * k * channels + i)];
  return total;
}

// A per-channel (or shared, repeated) parameter as floats; an empty one (the slope of "no PReLU")
// as ones, which makes y = z and g = gy.
std::vector<float> floats(const torch::Tensor& t, int64_t channels) {
  if (t.numel() == 0) return std::vector<float>(static_cast<size_t>(channels), 1.0f);
  const torch::Tensor f = t.detach().to(torch::kFloat).contiguous();
  std::vector<float> out(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) out[c] = f.data_ptr<float>()[f.numel() == 1 ? 0 : c];
  return out;
}

struct RunningStats {
  torch::Tensor mean, var;  // updated in place
  double momentum = 0.1, eps = 1e-5;
};

class BatchNormPReLUFunction : public torch::autograd::Function<BatchNormPReLUFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& gamma, const torch::Tensor& beta, const torch::Tensor& slope,
                               const RunningStats& running) {
    const int64_t channels = x.size(1), pixels = x.numel() / channels;
    // A sample of each channel (the first pixel) as the shift of the sums.
    std::vector<float> sample(static_cast<size_t>(channels));
    dispatch_float_or_bf16(x, [&](auto tag) {
      using S = decltype(tag);
      for (int64_t c = 0; c < channels; ++c) sample[c] = load(elements<S>(x)[c]);
    });
    std::vector<double> sums;
    dispatch_float_or_bf16(x, [&](auto tag) {
      using S = decltype(tag);
      const S* data = elements<S>(x);
      sums = sum_over_pixels(pixels, channels, 2, [&](int64_t begin, int64_t end, float* block, double* total) {
        ARCFORGE_ISA_DISPATCH(stats_range, data, sample.data(), channels, begin, end, block, total)
      });
    });
    const std::vector<float> g = floats(gamma, channels), b = floats(beta, channels), a = floats(slope, channels);
    std::vector<float> mean(static_cast<size_t>(channels)), invstd(mean.size()), scale(mean.size()), shift(mean.size());
    std::vector<double> unbiased(mean.size());
    const double n = static_cast<double>(pixels);
    for (int64_t c = 0; c < channels; ++c) {
      const double offset = sums[c] / n;
      const double var = std::max(0.0, sums[channels + c] / n - offset * offset);
      const double m = sample[c] + offset;
      const double inv = 1.0 / std::sqrt(var + running.eps);
      mean[c] = static_cast<float>(m);
      invstd[c] = static_cast<float>(inv);
      scale[c] = static_cast<float>(g[c] * inv);
      shift[c] = b[c];
      unbiased[c] = var * n / (n - 1.0);
    }
    {
      // As ATen: running = momentum * batch + (1 - momentum) * running, with the unbiased variance.
      const torch::Tensor batch_mean = torch::tensor(std::vector<double>(mean.begin(), mean.end()), torch::kDouble);
      const torch::Tensor batch_var = torch::tensor(unbiased, torch::kDouble);
      auto update = [&](const torch::Tensor& r, const torch::Tensor& batch) {
        r.copy_((batch * running.momentum + r.to(torch::kDouble) * (1.0 - running.momentum)).to(r.scalar_type()));
      };
      update(running.mean, batch_mean);
      update(running.var, batch_var);
    }
    torch::Tensor y = torch::empty_like(x, x.options(), at::MemoryFormat::ChannelsLast);
    dispatch_float_or_bf16(x, [&](auto tag) {
      using S = decltype(tag);
      const S* in = elements<S>(x);
      S* out = elements<S>(y);
      at::parallel_for(0, pixels, grain_pixels(channels), [&](int64_t begin, int64_t end) {
        ARCFORGE_ISA_DISPATCH(output_range, in, out, mean.data(), scale.data(), shift.data(), a.data(), channels, begin,
                              end)
      });
    });
    // Backward recomputes z with the same scale and shift, so that it sees the signs forward saw.
    const torch::Tensor constants = torch::stack({torch::tensor(mean), torch::tensor(invstd), torch::tensor(scale),
                                                  torch::tensor(shift)});
    ctx->save_for_backward({x, gamma, beta, slope, constants});
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &gamma = saved[1], &beta = saved[2], &slope = saved[3];
    const int64_t channels = x.size(1), pixels = x.numel() / channels;
    const float* constants = saved[4].data_ptr<float>();
    const float *mean = constants, *invstd = constants + channels, *scale = constants + 2 * channels,
                *shift = constants + 3 * channels;
    const std::vector<float> g = floats(gamma, channels), a = floats(slope, channels);
    const torch::Tensor gy = grads[0].to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
    std::vector<double> sums;
    dispatch_float_or_bf16(x, [&](auto tag) {
      using S = decltype(tag);
      const S *in = elements<S>(x), *d = elements<S>(gy);
      sums = sum_over_pixels(pixels, channels, 3, [&](int64_t begin, int64_t end, float* block, double* total) {
        ARCFORGE_ISA_DISPATCH(gradient_sums_range, in, d, scale, shift, a.data(), mean, channels, begin, end, block,
                              total)
      });
    });
    const double n = static_cast<double>(pixels);
    // gx = gamma * invstd * (g - mean(g) - (x - mean) * invstd^2 * mean(g * (x - mean))).
    std::vector<float> ka(static_cast<size_t>(channels)), kb(ka.size()), kc(ka.size());
    for (int64_t c = 0; c < channels; ++c) {
      const double gi = static_cast<double>(g[c]) * invstd[c];
      const double projection = sums[channels + c] / n * invstd[c] * invstd[c];
      ka[c] = static_cast<float>(gi);
      kb[c] = static_cast<float>(-gi * projection);
      kc[c] = static_cast<float>(-gi * sums[c] / n);
    }
    torch::Tensor gx;
    if (ctx->needs_input_grad(0)) {
      gx = torch::empty_like(x, x.options(), at::MemoryFormat::ChannelsLast);
      dispatch_float_or_bf16(x, [&](auto tag) {
        using S = decltype(tag);
        const S *in = elements<S>(x), *d = elements<S>(gy);
        S* out = elements<S>(gx);
        at::parallel_for(0, pixels, grain_pixels(channels), [&](int64_t begin, int64_t end) {
          ARCFORGE_ISA_DISPATCH(input_gradient_range, in, d, out, mean, scale, shift, a.data(), ka.data(),
                                kb.data(), kc.data(), channels, begin, end)
        });
      });
    }
    std::vector<double> d_gamma(static_cast<size_t>(channels)), d_beta(d_gamma.size()), d_slope(d_gamma.size());
    for (int64_t c = 0; c < channels; ++c) {
      d_beta[c] = sums[c];
      d_gamma[c] = sums[channels + c] * invstd[c];
      d_slope[c] = sums[2 * channels + c];
    }
    torch::Tensor gs;
    if (slope.numel() > 0) {
      gs = torch::tensor(d_slope, torch::kDouble);
      if (slope.numel() == 1) gs = gs.sum();
      gs = gs.to(slope.scalar_type()).reshape(slope.sizes());
    }
    return {gx, torch::tensor(d_gamma, torch::kDouble).to(gamma.scalar_type()),
            torch::tensor(d_beta, torch::kDouble).to(beta.scalar_type()), gs, torch::Tensor()};
  }
};

}  // namespace

bool batch_norm_prelu_uses_cpu_kernel(const torch::Tensor& x, torch::nn::BatchNorm2d& bn, const torch::Tensor& slope) {
  const auto& o = bn->options;
  if (!bn->is_training() || !o.affine() || !o.track_running_stats() || !o.momentum().has_value()) return false;
  const int64_t channels = x.dim() == 4 ? x.size(1) : -1;
  if (channels != o.num_features() || x.numel() <= channels || !x.device().is_cpu()) return false;
  if (x.scalar_type() != torch::kFloat && x.scalar_type() != torch::kBFloat16) return false;
  if (!x.is_contiguous(at::MemoryFormat::ChannelsLast)) return false;
  for (const torch::Tensor& t : {bn->weight, bn->bias, bn->running_mean, bn->running_var}) {
    if (!t.defined() || !t.device().is_cpu() || t.scalar_type() != torch::kFloat) return false;
  }
  if (!slope.defined()) return true;  // batch_norm2d(): no PReLU
  return slope.device().is_cpu() && slope.scalar_type() == torch::kFloat && slope.dim() == 1 &&
         (slope.numel() == 1 || slope.numel() == channels);
}

torch::Tensor batch_norm2d(const torch::Tensor& x, torch::nn::BatchNorm2d& bn) {
  return batch_norm_prelu(x, bn, torch::Tensor());
}

torch::Tensor batch_norm_prelu(const torch::Tensor& x, torch::nn::BatchNorm2d& bn, const torch::Tensor& slope) {
  if (!batch_norm_prelu_uses_cpu_kernel(x, bn, slope)) {
    return slope.defined() ? nn::prelu(bn->forward(x), slope) : bn->forward(x);
  }
  {
    torch::NoGradGuard no_grad;  // the module's own forward counts the batch the same way
    bn->num_batches_tracked.add_(1);
  }
  const RunningStats running{bn->running_mean, bn->running_var, *bn->options.momentum(), bn->options.eps()};
  // No PReLU travels as an empty slope: autograd's Function takes no undefined tensor.
  ARCFORGE_TRACE_OP("arcforge::batch_norm_prelu");
  return BatchNormPReLUFunction::apply(x, bn->weight, bn->bias, slope.defined() ? slope : torch::empty({0}), running);
}

}  // namespace arcforge::nn
