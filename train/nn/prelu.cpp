#include "train/nn/prelu.hpp"

#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace arcforge::nn {
namespace {

// x seen as [outer, channels, inner]: NCHW gives (N, C, H*W); channels-last (N, H, W, C) gives
// (N*H*W, C, 1), as does [N, C].
struct Geometry {
  int64_t outer = 0, channels = 0, inner = 0;
  at::MemoryFormat format = at::MemoryFormat::Contiguous;
};

Geometry geometry_of(const torch::Tensor& x) {
  Geometry g;
  g.channels = x.size(1);
  if (x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    g.format = at::MemoryFormat::ChannelsLast;
    g.outer = x.numel() / g.channels;
    g.inner = 1;
  } else {
    g.outer = x.size(0);
    g.inner = g.channels > 0 && g.outer > 0 ? x.numel() / (g.outer * g.channels) : 0;
  }
  return g;
}

// One slope per channel, as floats (a shared slope repeated).
std::vector<float> slopes(const torch::Tensor& weight, int64_t channels) {
  const torch::Tensor w = weight.detach().to(torch::kFloat).contiguous();
  std::vector<float> out(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) out[c] = w.data_ptr<float>()[w.numel() == 1 ? 0 : c];
  return out;
}

// Elements per parallel task: enough work to amortise the scheduling.
constexpr int64_t kGrainElements = 32768;

// Elements are float or bf16 held as its bits (uint16_t), converted with plain integer arithmetic
// so that GCC vectorises the loops below (c10::BFloat16's conversions keep them scalar).
inline float load(float v) { return v; }
inline float load(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline void store(float& dst, float v) { dst = v; }
inline void store(uint16_t& dst, float v) {  // round to nearest even, as c10::BFloat16; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  dst = v != v ? uint16_t{0x7FC0} : static_cast<uint16_t>(u >> 16);
}

// The innermost loops, with restrict pointers so that they vectorise: one row of channels
// (channels-last, [N,C]) or one channel plane (NCHW).
template <typename S>
void forward_row(const S* __restrict x, S* __restrict y, const float* __restrict w, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    const float v = load(x[c]), scaled = w[c] * v;  // both sides computed: a select, not a branch
    store(y[c], v > 0 ? v : scaled);
  }
}

template <typename S>
void forward_plane(const S* __restrict x, S* __restrict y, float slope, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = load(x[i]), scaled = slope * v;
    store(y[i], v > 0 ? v : scaled);
  }
}

template <typename S>
void backward_row(const S* __restrict x, const S* __restrict gy, S* __restrict gx, const float* __restrict w,
                  double* __restrict acc, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    const float v = load(x[c]), d = load(gy[c]), slope = w[c];  // loaded unconditionally: no branch
    const float factor = v > 0 ? 1.0f : slope, negative = v > 0 ? 0.0f : v;
    store(gx[c], factor * d);
    acc[c] += static_cast<double>(negative) * d;  // exact product, summed in double
  }
}

template <typename S>
double backward_plane(const S* __restrict x, const S* __restrict gy, S* __restrict gx, float slope, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = load(x[i]), d = load(gy[i]), scaled = slope * d;
    const bool positive = v > 0;
    store(gx[i], positive ? d : scaled);
    sum += positive ? 0.0 : static_cast<double>(v) * d;
  }
  return sum;
}

template <typename S>
void forward_kernel(const S* x, S* y, const float* w, const Geometry& g) {
  const int64_t channels = g.channels, inner = g.inner;
  if (inner == 1) {
    at::parallel_for(0, g.outer, std::max<int64_t>(1, kGrainElements / channels), [=](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) forward_row(x + row * channels, y + row * channels, w, channels);
    });
    return;
  }
  at::parallel_for(0, g.outer * channels, std::max<int64_t>(1, kGrainElements / inner), [=](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      forward_plane(x + plane * inner, y + plane * inner, w[plane % channels], inner);
    }
  });
}

// gx = x > 0 ? gy : w * gy;  gw[c] = sum of x * gy where x <= 0, in per-thread double partial sums
// (a float running sum over a batch's 10^5 positions per channel loses up to ~1e-3 of it).
template <typename S>
std::vector<double> backward_kernel(const S* x, const S* gy, S* gx, const float* w, const Geometry& g) {
  const int threads = at::get_num_threads();
  const int64_t channels = g.channels, inner = g.inner;
  std::vector<double> partial(static_cast<size_t>(threads) * static_cast<size_t>(channels), 0.0);
  double* partial_data = partial.data();
  if (inner == 1) {
    at::parallel_for(0, g.outer, std::max<int64_t>(1, kGrainElements / channels), [=](int64_t begin, int64_t end) {
      double* acc = partial_data + static_cast<int64_t>(at::get_thread_num()) * channels;
      for (int64_t row = begin; row < end; ++row) {
        const int64_t base = row * channels;
        backward_row(x + base, gy + base, gx + base, w, acc, channels);
      }
    });
  } else {
    at::parallel_for(0, g.outer * channels, std::max<int64_t>(1, kGrainElements / inner), [=](int64_t begin, int64_t end) {
      double* acc = partial_data + static_cast<int64_t>(at::get_thread_num()) * channels;
      for (int64_t plane = begin; plane < end; ++plane) {
        const int64_t c = plane % channels, base = plane * inner;
        acc[c] += backward_plane(x + base, gy + base, gx + base, w[c], inner);
      }
    });
  }
  std::vector<double> total(static_cast<size_t>(channels), 0.0);
  for (int t = 0; t < threads; ++t) {
    for (int64_t c = 0; c < channels; ++c) total[c] += partial[static_cast<size_t>(t * channels + c)];
  }
  return total;
}

// The tensor's elements as float or as bf16 bits.
template <typename S>
S* elements(const torch::Tensor& t) {
  return reinterpret_cast<S*>(t.data_ptr());
}

template <typename Fn>
void dispatch_float_or_bf16(const torch::Tensor& x, Fn&& fn) {
  if (x.scalar_type() == torch::kFloat) {
    fn(float{});
  } else {
    fn(uint16_t{});
  }
}

class PReLUFunction : public torch::autograd::Function<PReLUFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight) {
    const Geometry g = geometry_of(input);
    const torch::Tensor x = input.contiguous(g.format);
    const std::vector<float> w = slopes(weight, g.channels);
    torch::Tensor y = torch::empty_like(x, x.options(), g.format);
    dispatch_float_or_bf16(x, [&](auto tag) {
      using S = decltype(tag);
      forward_kernel<S>(elements<S>(x), elements<S>(y), w.data(), g);
    });
    ctx->save_for_backward({x, weight});
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& weight = saved[1];
    const Geometry g = geometry_of(x);
    const torch::Tensor gy = grads[0].to(x.scalar_type()).contiguous(g.format);
    const std::vector<float> w = slopes(weight, g.channels);
    torch::Tensor gx = torch::empty_like(x, x.options(), g.format);
    std::vector<double> per_channel;
    dispatch_float_or_bf16(x, [&](auto tag) {
      using S = decltype(tag);
      per_channel = backward_kernel<S>(elements<S>(x), elements<S>(gy), elements<S>(gx), w.data(), g);
    });
    torch::Tensor gw = torch::tensor(per_channel, torch::kDouble);
    if (weight.numel() == 1) gw = gw.sum().reshape(weight.sizes());
    return {gx, gw.to(weight.scalar_type()).reshape(weight.sizes())};
  }
};

}  // namespace

bool prelu_uses_cpu_kernel(const torch::Tensor& x, const torch::Tensor& weight) {
  return x.device().is_cpu() && weight.device().is_cpu() && x.dim() >= 2 &&
         (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kBFloat16) && weight.dim() == 1 &&
         (weight.numel() == 1 || weight.numel() == x.size(1)) && weight.is_floating_point() && x.numel() > 0;
}

torch::Tensor prelu(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!prelu_uses_cpu_kernel(x, weight)) return at::prelu(x, weight);
  return PReLUFunction::apply(x, weight);
}

}  // namespace arcforge::nn
