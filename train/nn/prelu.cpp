#include "train/nn/prelu.hpp"

#include "train/nn/cpu_lanes.hpp"
#include "train/nn/traced_op.hpp"

#include <ATen/Parallel.h>

#include <cstdint>
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

using namespace lanes;  // loads, stores, Lanes, elements, dispatch_float_or_bf16


// The N products a*b, exact in double, as two halves.
template <int N>
ARCFORGE_INLINE void double_products(typename Lanes<N>::f32 a, typename Lanes<N>::f32 b,
                                     typename Lanes<N>::f64_half& low, typename Lanes<N>::f64_half& high) {
  using L = Lanes<N>;
  typename L::f32_half a_low, a_high, b_low, b_high;
  std::memcpy(&a_low, &a, sizeof a_low);
  std::memcpy(&a_high, reinterpret_cast<const char*>(&a) + sizeof a_low, sizeof a_high);
  std::memcpy(&b_low, &b, sizeof b_low);
  std::memcpy(&b_high, reinterpret_cast<const char*>(&b) + sizeof b_low, sizeof b_high);
  low = __builtin_convertvector(a_low, typename L::f64_half) * __builtin_convertvector(b_low, typename L::f64_half);
  high = __builtin_convertvector(a_high, typename L::f64_half) * __builtin_convertvector(b_high, typename L::f64_half);
}

// The innermost loops: one row of channels (channels-last, [N,C]) or one channel plane (NCHW), N
// elements at a time (none when N is 0), the rest one by one.
template <int N, typename S>
ARCFORGE_INLINE void forward_row(const S* __restrict x, S* __restrict y, const float* __restrict w, int64_t n) {
  int64_t c = 0;
  if constexpr (N > 0) {
    for (; c + N <= n; c += N) {
      const auto v = load_lanes<N>(x + c);
      store_lanes<N>(y + c, v > 0.0f ? v : load_lanes<N>(w + c) * v);
    }
  }
  for (; c < n; ++c) {
    const float v = load(x[c]), scaled = w[c] * v;  // both sides computed: a select, not a branch
    store(y[c], v > 0 ? v : scaled);
  }
}

template <int N, typename S>
ARCFORGE_INLINE void forward_plane(const S* __restrict x, S* __restrict y, float slope, int64_t n) {
  int64_t i = 0;
  if constexpr (N > 0) {
    for (; i + N <= n; i += N) {
      const auto v = load_lanes<N>(x + i);
      store_lanes<N>(y + i, v > 0.0f ? v : slope * v);
    }
  }
  for (; i < n; ++i) {
    const float v = load(x[i]), scaled = slope * v;
    store(y[i], v > 0 ? v : scaled);
  }
}

// gx = x > 0 ? gy : w * gy; acc[c] += x * gy where x <= 0, each product exact in double.
template <int N, typename S>
ARCFORGE_INLINE void backward_row(const S* __restrict x, const S* __restrict gy, S* __restrict gx,
                                  const float* __restrict w, double* __restrict acc, int64_t n) {
  int64_t c = 0;
  if constexpr (N > 0) {
    using L = Lanes<N>;
    for (; c + N <= n; c += N) {
      const auto v = load_lanes<N>(x + c), d = load_lanes<N>(gy + c);
      const auto positive = v > 0.0f;
      store_lanes<N>(gx + c, positive ? d : load_lanes<N>(w + c) * d);
      typename L::f64_half low, high, acc_low, acc_high;
      double_products<N>(positive ? typename L::f32{} : v, d, low, high);
      std::memcpy(&acc_low, acc + c, sizeof acc_low);
      std::memcpy(&acc_high, acc + c + N / 2, sizeof acc_high);
      acc_low += low;
      acc_high += high;
      std::memcpy(acc + c, &acc_low, sizeof acc_low);
      std::memcpy(acc + c + N / 2, &acc_high, sizeof acc_high);
    }
  }
  for (; c < n; ++c) {
    const float v = load(x[c]), d = load(gy[c]), slope = w[c];  // loaded unconditionally: no branch
    const float factor = v > 0 ? 1.0f : slope, negative = v > 0 ? 0.0f : v;
    store(gx[c], factor * d);
    acc[c] += static_cast<double>(negative) * d;
  }
}

template <int N, typename S>
ARCFORGE_INLINE double backward_plane(const S* __restrict x, const S* __restrict gy, S* __restrict gx, float slope,
                                      int64_t n) {
  int64_t i = 0;
  double sum = 0.0;
  if constexpr (N > 0) {
    using L = Lanes<N>;
    typename L::f64_half sum_low{}, sum_high{};
    for (; i + N <= n; i += N) {
      const auto v = load_lanes<N>(x + i), d = load_lanes<N>(gy + i);
      const auto positive = v > 0.0f;
      store_lanes<N>(gx + i, positive ? d : slope * d);
      typename L::f64_half low, high;
      double_products<N>(positive ? typename L::f32{} : v, d, low, high);
      sum_low += low;
      sum_high += high;
    }
    const typename L::f64_half lanes = sum_low + sum_high;
    for (int k = 0; k < N / 2; ++k) sum += lanes[k];
  }
  for (; i < n; ++i) {
    const float v = load(x[i]), d = load(gy[i]), scaled = slope * d;
    const bool positive = v > 0;
    store(gx[i], positive ? d : scaled);
    sum += positive ? 0.0 : static_cast<double>(v) * d;
  }
  return sum;
}

// Ranges of rows or planes, one copy per instruction set (the row loops inlined into each), and
// the best one this CPU runs, as the gallery's exact scan picks its kernels.
#define ARCFORGE_PRELU_RANGES(SUFFIX, ATTRIBUTES, N)                                                           \
  template <typename S>                                                                                       \
  ATTRIBUTES void forward_rows_##SUFFIX(const S* x, S* y, const float* w, int64_t channels, int64_t begin,    \
                                        int64_t end) {                                                        \
    for (int64_t row = begin; row < end; ++row) forward_row<N>(x + row * channels, y + row * channels, w, channels); \
  }                                                                                                           \
  template <typename S>                                                                                       \
  ATTRIBUTES void forward_planes_##SUFFIX(const S* x, S* y, const float* w, int64_t channels, int64_t inner,  \
                                          int64_t begin, int64_t end) {                                       \
    for (int64_t plane = begin; plane < end; ++plane)                                                         \
      forward_plane<N>(x + plane * inner, y + plane * inner, w[plane % channels], inner);                    \
  }                                                                                                           \
  template <typename S>                                                                                       \
  ATTRIBUTES void backward_rows_##SUFFIX(const S* x, const S* gy, S* gx, const float* w, double* acc,         \
                                         int64_t channels, int64_t begin, int64_t end) {                      \
    for (int64_t row = begin; row < end; ++row) {                                                             \
      const int64_t base = row * channels;                                                                    \
      backward_row<N>(x + base, gy + base, gx + base, w, acc, channels);                                      \
    }                                                                                                         \
  }                                                                                                           \
  template <typename S>                                                                                       \
  ATTRIBUTES void backward_planes_##SUFFIX(const S* x, const S* gy, S* gx, const float* w, double* acc,       \
                                           int64_t channels, int64_t inner, int64_t begin, int64_t end) {     \
    for (int64_t plane = begin; plane < end; ++plane) {                                                       \
      const int64_t c = plane % channels, base = plane * inner;                                               \
      acc[c] += backward_plane<N>(x + base, gy + base, gx + base, w[c], inner);                               \
    }                                                                                                         \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_PRELU_RANGES)
#undef ARCFORGE_PRELU_RANGES

template <typename S>
void forward_kernel(const S* x, S* y, const float* w, const Geometry& g) {
  const int64_t channels = g.channels, inner = g.inner;
  if (inner == 1) {
    at::parallel_for(0, g.outer, std::max<int64_t>(1, kGrainElements / channels), [=](int64_t begin, int64_t end) {
      ARCFORGE_ISA_DISPATCH(forward_rows, x, y, w, channels, begin, end)
    });
    return;
  }
  at::parallel_for(0, g.outer * channels, std::max<int64_t>(1, kGrainElements / inner), [=](int64_t begin, int64_t end) {
    ARCFORGE_ISA_DISPATCH(forward_planes, x, y, w, channels, inner, begin, end)
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
      ARCFORGE_ISA_DISPATCH(backward_rows, x, gy, gx, w, acc, channels, begin, end)
    });
  } else {
    at::parallel_for(0, g.outer * channels, std::max<int64_t>(1, kGrainElements / inner), [=](int64_t begin, int64_t end) {
      double* acc = partial_data + static_cast<int64_t>(at::get_thread_num()) * channels;
      ARCFORGE_ISA_DISPATCH(backward_planes, x, gy, gx, w, acc, channels, inner, begin, end)
    });
  }
  std::vector<double> total(static_cast<size_t>(channels), 0.0);
  for (int t = 0; t < threads; ++t) {
    for (int64_t c = 0; c < channels; ++c) total[c] += partial[static_cast<size_t>(t * channels + c)];
  }
  return total;
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
  ARCFORGE_TRACE_OP("arcforge::prelu");
  return PReLUFunction::apply(x, weight);
}

}  // namespace arcforge::nn
