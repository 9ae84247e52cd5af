#include "train/nn/cpu_attention.hpp"

#include "arcforge/cpu/attention_tiles.hpp"
#include "train/nn/cpu_lanes.hpp"
#include "train/nn/traced_op.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace arcforge::nn {
namespace {

using namespace lanes;  // loads, stores, Lanes, elements, dispatch_float_or_bf16
// Shape, the tiles, their products and softmax rows, shared with the runtime's fused attention.
using namespace cpu::attention;

// grad_qkv [N, T, 3, heads, hd] (qkv's dtype) from grad_out [N, T, D] float, recomputing each pair's
// probabilities P. With dO the pair's output gradient: dV = P^T dO; dP = dO V^T; dS = P (dP - rowsum(dO O))
// * scale; dQ = dS K; dK = dS^T Q.
template <int N, typename S>
ARCFORGE_INLINE void backward_pairs(const Shape& s, const S* qkv, const float* out, const float* lse,
                                    const float* grad_out, S* grad_qkv, int64_t begin, int64_t end) {
  PairTiles tiles(s, N);
  const int64_t tokens = s.tokens, tp = tiles.tokens_padded, hdp = tiles.dim_padded, hd = s.head_dim, d = s.dim();
  std::vector<float> dout(tokens * hdp), dscores(tokens * tp), dq(tokens * hdp), dk(tokens * hdp), dv(tokens * hdp);
  std::vector<float> delta(tokens);
  for (int64_t pair = begin; pair < end; ++pair) {
    const int64_t n = pair / s.heads, h = pair % s.heads;
    load_pair<N>(tiles, s, packed_qkv(qkv, s), n, h, /*transposed_v=*/true);
    for (int64_t t = 0; t < tokens; ++t) {
      float* dot = dout.data() + t * hdp;
      std::copy_n(grad_out + (n * tokens + t) * d + h * hd, hd, dot);
      const float* o = out + (n * tokens + t) * d + h * hd;
      float sum = 0.0f;
      for (int64_t c = 0; c < hd; ++c) sum += dot[c] * o[c];
      delta[t] = sum;
    }
    float* p = tiles.scores.data();
    gemm_wide<N>(tokens, tp, hd, tiles.q.data(), hdp, 1, tiles.kt.data(), tp, p, tp);
    probabilities_from_lse<N>(p, tokens, tp, s.scale, lse + pair * tokens);
    gemm_wide<N>(tokens, tp, hd, dout.data(), hdp, 1, tiles.vt.data(), tp, dscores.data(), tp);
    for (int64_t t = 0; t < tokens; ++t) {
      float* ds = dscores.data() + t * tp;
      const float* pt = p + t * tp;
      for (int64_t j = 0; j < tp; ++j) ds[j] = pt[j] * (ds[j] - delta[t]) * s.scale;
    }
    gemm_narrow<N>(tokens, hdp, tokens, p, 1, tp, dout.data(), hdp, dv.data(), hdp);
    gemm_narrow<N>(tokens, hdp, tokens, dscores.data(), tp, 1, tiles.k.data(), hdp, dq.data(), hdp);
    gemm_narrow<N>(tokens, hdp, tokens, dscores.data(), 1, tp, tiles.q.data(), hdp, dk.data(), hdp);
    for (int64_t t = 0; t < tokens; ++t) {
      S* row = grad_qkv + (n * tokens + t) * 3 * d + h * hd;
      from_float<N>(dq.data() + t * hdp, row, hd);
      from_float<N>(dk.data() + t * hdp, row + d, hd);
      from_float<N>(dv.data() + t * hdp, row + 2 * d, hd);
    }
  }
}

#define ARCFORGE_ATTENTION_RANGES(SUFFIX, ATTRIBUTES, N)                                                        \
  template <typename S>                                                                                        \
  ATTRIBUTES void forward_pairs_##SUFFIX(const Shape& s, const S* qkv, float* out, float* lse, int64_t begin,  \
                                         int64_t end) {                                                        \
    forward_pairs<N>(s, packed_qkv(qkv, s), out, lse, begin, end);                                             \
  }                                                                                                            \
  template <typename S>                                                                                        \
  ATTRIBUTES void backward_pairs_##SUFFIX(const Shape& s, const S* qkv, const float* out, const float* lse,     \
                                          const float* grad_out, S* grad_qkv, int64_t begin, int64_t end) {    \
    backward_pairs<N>(s, qkv, out, lse, grad_out, grad_qkv, begin, end);                                       \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_ATTENTION_RANGES)
#undef ARCFORGE_ATTENTION_RANGES

Shape shape_of(const torch::Tensor& qkv, int64_t heads) {
  Shape s;
  s.batch = qkv.size(0);
  s.tokens = qkv.size(1);
  s.heads = heads;
  s.head_dim = qkv.size(2) / 3 / heads;
  s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  return s;
}

// [out, lse]
std::pair<torch::Tensor, torch::Tensor> attention_forward(const torch::Tensor& qkv, int64_t heads) {
  const Shape s = shape_of(qkv, heads);
  torch::Tensor out = torch::empty({s.batch, s.tokens, s.dim()}, qkv.options().dtype(torch::kFloat));
  torch::Tensor lse = torch::empty({s.batch, s.heads, s.tokens}, qkv.options().dtype(torch::kFloat));
  float* out_data = out.data_ptr<float>();
  float* lse_data = lse.data_ptr<float>();
  dispatch_float_or_bf16(qkv, [&](auto element) {
    using S = decltype(element);
    const S* x = elements<S>(qkv);
    at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
      ARCFORGE_ISA_DISPATCH_TEMPLATE(forward_pairs, S, s, x, out_data, lse_data, begin, end)
    });
  });
  return {out, lse};
}

torch::Tensor attention_backward(const torch::Tensor& qkv, const torch::Tensor& out, const torch::Tensor& lse,
                                 const torch::Tensor& grad_out, int64_t heads) {
  const Shape s = shape_of(qkv, heads);
  const torch::Tensor go = grad_out.to(torch::kFloat).contiguous();
  torch::Tensor grad_qkv = torch::empty_like(qkv);
  const float* out_data = out.data_ptr<float>();
  const float* lse_data = lse.data_ptr<float>();
  const float* go_data = go.data_ptr<float>();
  dispatch_float_or_bf16(qkv, [&](auto element) {
    using S = decltype(element);
    const S* x = elements<S>(qkv);
    S* gx = elements<S>(grad_qkv);
    at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
      ARCFORGE_ISA_DISPATCH_TEMPLATE(backward_pairs, S, s, x, out_data, lse_data, go_data, gx, begin, end)
    });
  });
  return grad_qkv;
}

class AttentionFunction : public torch::autograd::Function<AttentionFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& qkv, int64_t heads) {
    auto [out, lse] = attention_forward(qkv, heads);
    ctx->save_for_backward({qkv, out, lse});
    ctx->saved_data["heads"] = heads;
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {attention_backward(saved[0], saved[1], saved[2], grads[0], ctx->saved_data["heads"].toInt()),
            torch::Tensor()};
  }
};

// The same mathematics in libtorch's operations: q, k and v at least in float.
torch::Tensor attention_reference_path(const torch::Tensor& qkv, int64_t heads) {
  const int64_t n = qkv.size(0), t = qkv.size(1), d = qkv.size(2) / 3, head_dim = d / heads;
  const torch::Tensor parts = qkv.reshape({n, t, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
  auto at_least_fp32 = [](const torch::Tensor& x) {
    return x.scalar_type() == torch::kDouble ? x : x.to(torch::kFloat);
  };
  const torch::Tensor q = at_least_fp32(parts[0]), k = at_least_fp32(parts[1]), v = at_least_fp32(parts[2]);
  const torch::Tensor attention =
      (torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(head_dim)))).softmax(-1);
  return torch::matmul(attention, v).transpose(1, 2).reshape({n, t, d});
}

}  // namespace

bool attention_uses_cpu_kernel(const torch::Tensor& qkv, int64_t heads) {
  return qkv.device().is_cpu() && qkv.dim() == 3 && qkv.numel() > 0 && qkv.is_contiguous() && heads > 0 &&
         qkv.size(2) % (3 * heads) == 0 && (qkv.scalar_type() == torch::kFloat || qkv.scalar_type() == torch::kBFloat16);
}

torch::Tensor attention_from_qkv(const torch::Tensor& qkv, int64_t heads) {
  if (!attention_uses_cpu_kernel(qkv, heads)) return attention_reference_path(qkv, heads);
  ARCFORGE_TRACE_OP("arcforge::attention");
  return AttentionFunction::apply(qkv, heads);
}

}  // namespace arcforge::nn
