#include "train/nn/relu6.hpp"

#include "train/nn/cpu_lanes.hpp"
#include "train/nn/traced_op.hpp"

#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>

namespace arcforge::nn {
namespace {

using namespace lanes;  // loads, stores, Lanes, elements, dispatch_float_or_bf16

// Elements per parallel task: enough work to amortise the scheduling.
constexpr int64_t kGrainElements = 32768;

template <int N, typename S>
ARCFORGE_INLINE void forward_span(const S* __restrict x, S* __restrict y, int64_t begin, int64_t end) {
  int64_t i = begin;
  if constexpr (N > 0) {
    using F = typename Lanes<N>::f32;
    for (; i + N <= end; i += N) {
      const F v = load_lanes<N>(x + i);  // NaN fails both tests and stays NaN, as in hardtanh
      store_lanes<N>(y + i, v > 6.0f ? F{} + 6.0f : (v < 0.0f ? F{} : v));
    }
  }
  for (; i < end; ++i) {
    const float v = load(x[i]);
    store(y[i], v > 6.0f ? 6.0f : (v < 0.0f ? 0.0f : v));
  }
}

// gx = 0 < y < 6 ? gy : 0 (y is the output: 0 < y < 6 exactly where 0 < x < 6).
template <int N, typename S>
ARCFORGE_INLINE void backward_span(const S* __restrict y, const S* __restrict gy, S* __restrict gx, int64_t begin,
                                   int64_t end) {
  int64_t i = begin;
  if constexpr (N > 0) {
    using F = typename Lanes<N>::f32;
    for (; i + N <= end; i += N) {
      using I = typename Lanes<N>::i32;
      const F v = load_lanes<N>(y + i), d = load_lanes<N>(gy + i);
      // The select as a bitwise and: GCC 12 turns "(a & b) ? d : 0" on vectors into scalar code.
      const I passes = (v > 0.0f) & (v < 6.0f);
      I bits;
      std::memcpy(&bits, &d, sizeof bits);
      bits &= passes;
      F g;
      std::memcpy(&g, &bits, sizeof g);
      store_lanes<N>(gx + i, g);
    }
  }
  for (; i < end; ++i) {
    const float v = load(y[i]), d = load(gy[i]);
    store(gx[i], v > 0.0f && v < 6.0f ? d : 0.0f);
  }
}

#define ARCFORGE_RELU6_RANGES(SUFFIX, ATTRIBUTES, N)                                                          \
  template <typename S>                                                                                      \
  ATTRIBUTES void forward_range_##SUFFIX(const S* x, S* y, int64_t begin, int64_t end) {                     \
    forward_span<N>(x, y, begin, end);                                                                       \
  }                                                                                                          \
  template <typename S>                                                                                      \
  ATTRIBUTES void backward_range_##SUFFIX(const S* y, const S* gy, S* gx, int64_t begin, int64_t end) {      \
    backward_span<N>(y, gy, gx, begin, end);                                                                 \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_RELU6_RANGES)
#undef ARCFORGE_RELU6_RANGES

class ReLU6Function : public torch::autograd::Function<ReLU6Function> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input) {
    const torch::Tensor x = input.contiguous();
    torch::Tensor y = torch::empty_like(x);
    dispatch_float_or_bf16(x, [&](auto tag) {
      using S = decltype(tag);
      const S* xs = elements<S>(x);
      S* ys = elements<S>(y);
      at::parallel_for(0, x.numel(), kGrainElements, [=](int64_t begin, int64_t end) {
        ARCFORGE_ISA_DISPATCH_TEMPLATE(forward_range, S, xs, ys, begin, end)
      });
    });
    ctx->save_for_backward({y});
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const torch::Tensor y = ctx->get_saved_variables()[0];
    const torch::Tensor gy = grads[0].to(y.scalar_type()).contiguous();
    torch::Tensor gx = torch::empty_like(y);
    dispatch_float_or_bf16(y, [&](auto tag) {
      using S = decltype(tag);
      const S* ys = elements<S>(y);
      const S* gys = elements<S>(gy);
      S* gxs = elements<S>(gx);
      at::parallel_for(0, y.numel(), kGrainElements, [=](int64_t begin, int64_t end) {
        ARCFORGE_ISA_DISPATCH_TEMPLATE(backward_range, S, ys, gys, gxs, begin, end)
      });
    });
    return {gx};
  }
};

}  // namespace

bool relu6_uses_cpu_kernel(const torch::Tensor& x) {
  return x.device().is_cpu() && x.numel() > 0 && (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kBFloat16);
}

torch::Tensor relu6(const torch::Tensor& x) {
  if (!relu6_uses_cpu_kernel(x)) return torch::hardtanh(x, 0.0, 6.0);
  ARCFORGE_TRACE_OP("arcforge::relu6");
  return ReLU6Function::apply(x);
}

}  // namespace arcforge::nn
