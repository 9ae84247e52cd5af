#pragma once
// Multi-head attention, softmax(q k^T * scale) v per image and head, as CPU kernel pieces shared by
// the trainer's ViT attention (train/nn/cpu_attention.cpp, forward and backward) and the runtime's
// fused attention node (src/runtime/ops_attention.cpp). Each (image, head) pair is one task: its q,
// k and v are packed into float tiles that stay in cache, the products run in register tiles of 16
// or 8 lanes (the N of the instruction set, lanes.hpp), and the softmax's normalisation is applied
// to the [T, head_dim] product instead of the [T, T] probabilities. Include only from a kernel's
// .cpp (see lanes.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "arcforge/cpu/lanes.hpp"

namespace arcforge::cpu::attention {

using namespace lanes;  // loads, stores, Lanes

struct Shape {
  int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0;
  float scale = 1.0f;  // multiplies q k^T before the softmax: head_dim^-1/2 in a ViT
  int64_t dim() const { return heads * head_dim; }
};

// Where the heads' q, k and v rows are: token t of image n, head h, starts at
// X + n * batch_stride + t * token_stride + h * head_dim for X = q, k, v (head_dim contiguous
// elements each).
template <typename S>
struct HeadsView {
  const S* q = nullptr;
  const S* k = nullptr;
  const S* v = nullptr;
  int64_t batch_stride = 0, token_stride = 0;
};

// A ViT's qkv projection [N, T, 3 * D], laid out [N, T, 3, heads, head_dim].
template <typename S>
HeadsView<S> packed_qkv(const S* qkv, const Shape& s) {
  const int64_t d = s.dim();
  return {qkv, qkv + d, qkv + 2 * d, s.tokens * 3 * d, 3 * d};
}

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

// Copies head h of image n out of x; v transposed too when asked.
template <int N, typename S>
ARCFORGE_INLINE void load_pair(PairTiles& tiles, const Shape& s, const HeadsView<S>& x, int64_t n, int64_t h,
                               bool transposed_v) {
  const int64_t hd = s.head_dim, hdp = tiles.dim_padded, tp = tiles.tokens_padded;
  for (int64_t t = 0; t < s.tokens; ++t) {
    const int64_t offset = n * x.batch_stride + t * x.token_stride + h * hd;
    to_float<N>(x.q + offset, tiles.q.data() + t * hdp, hd);
    to_float<N>(x.k + offset, tiles.k.data() + t * hdp, hd);
    to_float<N>(x.v + offset, tiles.v.data() + t * hdp, hd);
  }
  transpose(tiles.k.data(), hdp, tiles.kt.data(), tp, s.tokens, hd);
  if (transposed_v) transpose(tiles.v.data(), hdp, tiles.vt.data(), tp, s.tokens, hd);
}

// The largest of n floats, or the smallest.
template <int N, bool Largest = true>
ARCFORGE_INLINE float extreme_of(const float* x, int64_t n) {
  const auto better = [](auto a, auto b) { return Largest ? a > b : a < b; };
  float best = Largest ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
  int64_t j = 0;
  if constexpr (N > 0) {
    using F = typename Lanes<N>::f32;
    if (n >= N) {
      F m = load_lanes<N>(x);
      for (j = N; j + N <= n; j += N) {
        const F v = load_lanes<N>(x + j);
        m = better(v, m) ? v : m;
      }
      for (int l = 0; l < N; ++l) best = better(m[l], best) ? m[l] : best;
    }
  }
  for (; j < n; ++j) best = better(x[j], best) ? x[j] : best;
  return best;
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
// log-sum-exp of the scaled scores to lse (unless null) and 1 / its sum to inverse_sum. The rows are left
// unnormalised: the caller scales the [T, head_dim] product with V instead of the [T, T] rows.
template <int N>
ARCFORGE_INLINE void exp_rows(float* scores, int64_t tokens, int64_t tokens_padded, float scale, float* lse,
                              float* inverse_sum) {
  for (int64_t t = 0; t < tokens; ++t) {
    float* row = scores + t * tokens_padded;
    // The largest scaled score: the largest score scaled, or the smallest when the scale is negative.
    const float max = (scale >= 0 ? extreme_of<N>(row, tokens) : extreme_of<N, false>(row, tokens)) * scale;
    const float sum = exp_row<N>(row, tokens, tokens_padded, scale, max);
    inverse_sum[t] = 1.0f / sum;
    if (lse) lse[t] = max + std::log(sum);
  }
}

// scores (unscaled q k^T) -> the forward's probabilities again, from its log-sum-exp.
template <int N>
ARCFORGE_INLINE void probabilities_from_lse(float* scores, int64_t tokens, int64_t tokens_padded, float scale,
                                            const float* lse) {
  for (int64_t t = 0; t < tokens; ++t) exp_row<N>(scores + t * tokens_padded, tokens, tokens_padded, scale, lse[t]);
}

// out [N, T, D] float (row t of image n holds the heads' outputs side by side), and lse
// [N, heads, T] unless null: one (image, head) pair at a time over [begin, end).
template <int N, typename S>
ARCFORGE_INLINE void forward_pairs(const Shape& s, const HeadsView<S>& x, float* out, float* lse, int64_t begin,
                                   int64_t end) {
  PairTiles tiles(s, N);
  const int64_t tp = tiles.tokens_padded, hdp = tiles.dim_padded, hd = s.head_dim, d = s.dim();
  std::vector<float> o(s.tokens * hdp), inverse_sum(s.tokens);
  for (int64_t pair = begin; pair < end; ++pair) {
    const int64_t n = pair / s.heads, h = pair % s.heads;
    load_pair<N>(tiles, s, x, n, h, /*transposed_v=*/false);
    gemm_wide<N>(s.tokens, tp, hd, tiles.q.data(), hdp, 1, tiles.kt.data(), tp, tiles.scores.data(), tp);
    exp_rows<N>(tiles.scores.data(), s.tokens, tp, s.scale, lse ? lse + pair * s.tokens : nullptr, inverse_sum.data());
    gemm_narrow<N>(s.tokens, hdp, s.tokens, tiles.scores.data(), tp, 1, tiles.v.data(), hdp, o.data(), hdp);
    for (int64_t t = 0; t < s.tokens; ++t) {
      const float* ot = o.data() + t * hdp;
      float* dst = out + (n * s.tokens + t) * d + h * hd;
      for (int64_t c = 0; c < hd; ++c) dst[c] = ot[c] * inverse_sum[t];
    }
  }
}

}  // namespace arcforge::cpu::attention
