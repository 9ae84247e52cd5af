#include "train/nn/cpu_attention.hpp"

#include "train/nn/cpu_lanes.hpp"

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

struct Shape {
  int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0;
  float scale = 1.0f;  // head_dim^-1/2
  int64_t dim() const { return heads * head_dim; }
};

// Widths of the packed tiles: rows padded with zeros to whole vectors of N lanes (N = 0: scalar).
constexpr int64_t padded(int64_t n, int lanes_per_vector) {
  const int64_t v = lanes_per_vector > 0 ? lanes_per_vector : 1;
  return (n + v - 1) / v * v;
}

// exp of N lanes: Cody-Waite reduction to r in [-ln2/2, ln2/2], Cephes' degree-6 polynomial for
// e^r, scaled by 2^n through the exponent bits (relative error within 2 float ulp); 0 below -87.
template <int N>
ARCFORGE_INLINE typename Lanes<N>::f32 exp_lanes(typename Lanes<N>::f32 x) {
  using L = Lanes<N>;
  using F = typename L::f32;
  const auto underflow = x < -87.0f;
  x = x > 88.0f ? F{} + 88.0f : x;
  x = underflow ? F{} - 87.0f : x;
  const F magic = F{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const F n = (x * 1.44269504088896341f + magic) - magic;
  const F r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  F p = F{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const typename L::i32 bits = (__builtin_convertvector(n, typename L::i32) + 127) << 23;
  F scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return underflow ? F{} : p * scale;
}

// C[i][j] = sum over k < depth of A(i, k) * B[k][j], for R rows and W vectors of N columns, the
// accumulators in registers. A(i, k) = a[i * a_row + k * a_k], so that the same tile multiplies by
// A or by A transposed.
template <int N, int R, int W>
ARCFORGE_INLINE void gemm_tile(const float* __restrict a, int64_t a_row, int64_t a_k, const float* __restrict b,
                               int64_t ldb, float* __restrict c, int64_t ldc, int64_t depth) {
  using F = typename Lanes<N>::f32;
  F acc[R][W];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int w = 0; w < W; ++w) acc[r][w] = F{};
  for (int64_t k = 0; k < depth; ++k) {
    F bv[W];
#pragma GCC unroll 16
    for (int w = 0; w < W; ++w) bv[w] = load_lanes<N>(b + k * ldb + w * N);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float av = a[r * a_row + k * a_k];
#pragma GCC unroll 16
      for (int w = 0; w < W; ++w) acc[r][w] += av * bv[w];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int w = 0; w < W; ++w) store_lanes<N>(c + r * ldc + w * N, acc[r][w]);
}

// Rows [i, i + R) of C = A B: tiles of W vectors, then the leftover vectors one at a time.
template <int N, int R, int W>
ARCFORGE_INLINE void gemm_rows(int64_t i, int64_t vectors, int64_t depth, const float* a, int64_t a_row, int64_t a_k,
                               const float* b, int64_t ldb, float* c, int64_t ldc) {
  int64_t v = 0;
  for (; v + W <= vectors; v += W)
    gemm_tile<N, R, W>(a + i * a_row, a_row, a_k, b + v * N, ldb, c + i * ldc + v * N, ldc, depth);
  for (; v < vectors; ++v) gemm_tile<N, R, 1>(a + i * a_row, a_row, a_k, b + v * N, ldb, c + i * ldc + v * N, ldc, depth);
}

// C [rows x columns] = A [rows x depth] * B [depth x columns] (A as gemm_tile reads it), columns a
// multiple of N: tiles of R rows, then the leftover rows one at a time.
template <int N, int R, int W>
ARCFORGE_INLINE void gemm(int64_t rows, int64_t columns, int64_t depth, const float* a, int64_t a_row, int64_t a_k,
                          const float* b, int64_t ldb, float* c, int64_t ldc) {
  if constexpr (N == 0) {
    for (int64_t i = 0; i < rows; ++i) {
      float* ci = c + i * ldc;
      std::fill(ci, ci + columns, 0.0f);
      for (int64_t k = 0; k < depth; ++k) {
        const float av = a[i * a_row + k * a_k];
        const float* bk = b + k * ldb;
        for (int64_t j = 0; j < columns; ++j) ci[j] += av * bk[j];
      }
    }
  } else {
    const int64_t vectors = columns / N;
    int64_t i = 0;
    for (; i + R <= rows; i += R) gemm_rows<N, R, W>(i, vectors, depth, a, a_row, a_k, b, ldb, c, ldc);
    for (; i < rows; ++i) gemm_rows<N, 1, W>(i, vectors, depth, a, a_row, a_k, b, ldb, c, ldc);
  }
}

// Register tiles: wide products (the [T, T] scores) take 4 rows by 4 vectors, narrow ones (the
// [T, head_dim] outputs and gradients) 8 rows by 2; half as many rows with AVX2's 16 registers.
template <int N>
ARCFORGE_INLINE void gemm_wide(int64_t rows, int64_t columns, int64_t depth, const float* a, int64_t a_row,
                               int64_t a_k, const float* b, int64_t ldb, float* c, int64_t ldc) {
  gemm<N, (N == 16 ? 4 : 2), 4>(rows, columns, depth, a, a_row, a_k, b, ldb, c, ldc);
}
template <int N>
ARCFORGE_INLINE void gemm_narrow(int64_t rows, int64_t columns, int64_t depth, const float* a, int64_t a_row,
                                 int64_t a_k, const float* b, int64_t ldb, float* c, int64_t ldc) {
  gemm<N, (N == 16 ? 8 : 4), 2>(rows, columns, depth, a, a_row, a_k, b, ldb, c, ldc);
}

// n elements of src converted to float into dst, N at a time, then one by one.
template <int N, typename S>
ARCFORGE_INLINE void to_float(const S* __restrict src, float* __restrict dst, int64_t n) {
  int64_t i = 0;
  if constexpr (N > 0)
    for (; i + N <= n; i += N) store_lanes<N>(dst + i, load_lanes<N>(src + i));
  for (; i < n; ++i) dst[i] = load(src[i]);
}
template <int N, typename S>
ARCFORGE_INLINE void from_float(const float* __restrict src, S* __restrict dst, int64_t n) {
  int64_t i = 0;
  if constexpr (N > 0)
    for (; i + N <= n; i += N) store_lanes<N>(dst + i, load_lanes<N>(src + i));
  for (; i < n; ++i) store(dst[i], src[i]);
}

// [rows x columns] with row stride ld -> [columns x rows] with row stride ld_t.
ARCFORGE_INLINE void transpose(const float* __restrict src, int64_t ld, float* __restrict dst, int64_t ld_t,
                               int64_t rows, int64_t columns) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < columns; ++c) dst[c * ld_t + r] = src[r * ld + c];
}

// One (image, head) pair's q, k and v as float tiles, zero beyond the valid rows and columns (the
// padding is written once, when the tiles are allocated, and never touched).
struct PairTiles {
  int64_t tokens_padded, dim_padded;
  std::vector<float> q, k, v;     // [T, hdp]
  std::vector<float> kt, vt;      // [hd, Tp]
  std::vector<float> scores;      // [T, Tp]: the scores, then the probabilities
  PairTiles(const Shape& s, int lanes_per_vector)
      : tokens_padded(padded(s.tokens, lanes_per_vector)),
        dim_padded(padded(s.head_dim, lanes_per_vector)),
        q(s.tokens * dim_padded),
        k(s.tokens * dim_padded),
        v(s.tokens * dim_padded),
        kt(s.head_dim * tokens_padded),
        vt(s.head_dim * tokens_padded),
        scores(s.tokens * tokens_padded) {}
};

// Copies head h of image n out of qkv [N, T, 3, heads, hd]; v transposed too when asked.
template <int N, typename S>
ARCFORGE_INLINE void load_pair(PairTiles& tiles, const Shape& s, const S* qkv, int64_t n, int64_t h, bool transposed_v) {
  const int64_t d = s.dim(), hd = s.head_dim, hdp = tiles.dim_padded, tp = tiles.tokens_padded;
  for (int64_t t = 0; t < s.tokens; ++t) {
    const S* row = qkv + (n * s.tokens + t) * 3 * d + h * hd;
    to_float<N>(row, tiles.q.data() + t * hdp, hd);
    to_float<N>(row + d, tiles.k.data() + t * hdp, hd);
    to_float<N>(row + 2 * d, tiles.v.data() + t * hdp, hd);
  }
  transpose(tiles.k.data(), hdp, tiles.kt.data(), tp, s.tokens, hd);
  if (transposed_v) transpose(tiles.v.data(), hdp, tiles.vt.data(), tp, s.tokens, hd);
}

// The largest of n floats.
template <int N>
ARCFORGE_INLINE float max_of(const float* x, int64_t n) {
  float max = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  if constexpr (N > 0) {
    using F = typename Lanes<N>::f32;
    if (n >= N) {
      F m = load_lanes<N>(x);
      for (j = N; j + N <= n; j += N) {
        const F v = load_lanes<N>(x + j);
        m = v > m ? v : m;
      }
      for (int l = 0; l < N; ++l) max = std::max(max, m[l]);
    }
  }
  for (; j < n; ++j) max = std::max(max, x[j]);
  return max;
}

// row[j] = exp(row[j] * scale - shift) over the padded row; returns the sum over the first `valid`,
// and the padding columns become 0.
template <int N>
ARCFORGE_INLINE float exp_row(float* row, int64_t valid, int64_t padded_length, float scale, float shift) {
  float sum = 0.0f;
  int64_t j = 0;
  if constexpr (N > 0) {
    using F = typename Lanes<N>::f32;
    F sums{};
    for (; j + N <= valid; j += N) {
      const F e = exp_lanes<N>(load_lanes<N>(row + j) * scale - shift);
      store_lanes<N>(row + j, e);
      sums += e;
    }
    for (int l = 0; l < N; ++l) sum += sums[l];
  }
  for (; j < valid; ++j) sum += row[j] = std::exp(row[j] * scale - shift);
  for (; j < padded_length; ++j) row[j] = 0.0f;
  return sum;
}

// scores (unscaled q k^T) -> exp(scaled score - row max) in place, the padding columns 0; each row's
// log-sum-exp of the scaled scores to lse and 1 / its sum to inverse_sum. The rows are left
// unnormalised: the caller scales the [T, head_dim] product with V instead of the [T, T] rows.
template <int N>
ARCFORGE_INLINE void exp_rows(float* scores, int64_t tokens, int64_t tokens_padded, float scale, float* lse,
                              float* inverse_sum) {
  for (int64_t t = 0; t < tokens; ++t) {
    float* row = scores + t * tokens_padded;
    // scale > 0, so the largest scaled score is the largest score scaled.
    const float max = max_of<N>(row, tokens) * scale;
    const float sum = exp_row<N>(row, tokens, tokens_padded, scale, max);
    inverse_sum[t] = 1.0f / sum;
    lse[t] = max + std::log(sum);
  }
}

// scores (unscaled q k^T) -> the forward's probabilities again, from its log-sum-exp.
template <int N>
ARCFORGE_INLINE void probabilities_from_lse(float* scores, int64_t tokens, int64_t tokens_padded, float scale,
                                            const float* lse) {
  for (int64_t t = 0; t < tokens; ++t) exp_row<N>(scores + t * tokens_padded, tokens, tokens_padded, scale, lse[t]);
}

// out [N, T, D] float, lse [N, heads, T]: one (image, head) pair at a time over [begin, end).
template <int N, typename S>
ARCFORGE_INLINE void forward_pairs(const Shape& s, const S* qkv, float* out, float* lse, int64_t begin, int64_t end) {
  PairTiles tiles(s, N);
  const int64_t tp = tiles.tokens_padded, hdp = tiles.dim_padded, hd = s.head_dim, d = s.dim();
  std::vector<float> o(s.tokens * hdp), inverse_sum(s.tokens);
  for (int64_t pair = begin; pair < end; ++pair) {
    const int64_t n = pair / s.heads, h = pair % s.heads;
    load_pair<N>(tiles, s, qkv, n, h, /*transposed_v=*/false);
    gemm_wide<N>(s.tokens, tp, hd, tiles.q.data(), hdp, 1, tiles.kt.data(), tp, tiles.scores.data(), tp);
    exp_rows<N>(tiles.scores.data(), s.tokens, tp, s.scale, lse + pair * s.tokens, inverse_sum.data());
    gemm_narrow<N>(s.tokens, hdp, s.tokens, tiles.scores.data(), tp, 1, tiles.v.data(), hdp, o.data(), hdp);
    for (int64_t t = 0; t < s.tokens; ++t) {
      const float* ot = o.data() + t * hdp;
      float* dst = out + (n * s.tokens + t) * d + h * hd;
      for (int64_t c = 0; c < hd; ++c) dst[c] = ot[c] * inverse_sum[t];
    }
  }
}

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
    load_pair<N>(tiles, s, qkv, n, h, /*transposed_v=*/true);
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
    forward_pairs<N>(s, qkv, out, lse, begin, end);                                                            \
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
  return AttentionFunction::apply(qkv, heads);
}

}  // namespace arcforge::nn
