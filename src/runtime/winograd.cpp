// The F(4x4, 3x3) transforms (winograd.hpp). Every value is a vector of one pixel's channels of a
// block of the nChw8c or nChw16c layout (8 or 16 lanes, as the layout's block), so the transforms
// run a block at a time with no shuffles. The matrices (Lavin and Gray, section 4.2; points 0, +-1,
// +-2 and infinity):
//
//   B^T = | 4  0 -5  0  1  0 |    G = |  1/4     0     0  |    A^T = | 1  1  1  1  1  0 |
//         | 0 -4 -4  1  1  0 |        | -1/6  -1/6  -1/6 |          | 0  1 -1  2 -2  0 |
//         | 0  4 -4 -1  1  0 |        | -1/6   1/6  -1/6 |          | 0  1  1  4  4  0 |
//         | 0 -2 -1  2  1  0 |        |  1/24  1/12  1/6 |          | 0  1 -1  8 -8  1 |
//         | 0  2 -1 -2  1  0 |        |  1/24 -1/12  1/6 |
//         | 0  4  0 -5  0  1 |        |   0     0     1  |
#include "winograd.hpp"

#include <cstring>

#include "arcforge/cpu/lanes.hpp"

namespace arcforge::runtime::detail::winograd {
namespace {

using cpu::lanes::Lanes;
using cpu::lanes::load_lanes;
using cpu::lanes::store_lanes;

// B^T x for one column of six values (also x B for a row).
template <class V>
ARCFORGE_INLINE void input_1d(const V (&d)[6], V (&r)[6]) {
  r[0] = 4 * d[0] - 5 * d[2] + d[4];
  r[1] = -4 * (d[1] + d[2]) + d[3] + d[4];
  r[2] = 4 * (d[1] - d[2]) - d[3] + d[4];
  r[3] = 2 * (d[3] - d[1]) - d[2] + d[4];
  r[4] = 2 * (d[1] - d[3]) - d[2] + d[4];
  r[5] = 4 * d[1] - 5 * d[3] + d[5];
}

// A^T m for one column of six values (also m A for a row).
template <class V>
ARCFORGE_INLINE void output_1d(const V (&m)[6], V (&r)[4]) {
  const V a1 = m[1] + m[2], a2 = m[1] - m[2], a3 = m[3] + m[4], a4 = m[3] - m[4];
  r[0] = m[0] + a1 + a3;
  r[1] = a2 + 2 * a4;
  r[2] = a1 + 4 * a3;
  r[3] = a2 + 8 * a4 + m[5];
}

struct TileAt {
  int64_t image, y, x;  // the tile's first output row and column
};

ARCFORGE_INLINE TileAt tile_at(const Geometry& g, int64_t tile) {
  const int64_t per_image = g.tiles_h() * g.tiles_w();
  const int64_t in_image = tile % per_image;
  return {tile / per_image, in_image / g.tiles_w() * kTile, in_image % g.tiles_w() * kTile};
}

template <int W>
ARCFORGE_INLINE void input_range(const Geometry& g, const float* src, const TileRun& run, float* v, int64_t begin,
                                 int64_t end) {
  using V = typename Lanes<W>::f32;
  const int64_t blocks = g.in_channels / W;
  const int64_t plane = g.in_h * g.in_w * W;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t t = item / blocks, cb = item % blocks;
    const TileAt at = tile_at(g, run.first_tile + t);
    const float* block = src + (at.image * blocks + cb) * plane;
    const int64_t y0 = at.y - g.pad_t, x0 = at.x - g.pad_l;
    V d[6][6];
    if (y0 >= 0 && x0 >= 0 && y0 + 6 <= g.in_h && x0 + 6 <= g.in_w) {
      for (int i = 0; i < 6; ++i) {
        const float* row = block + ((y0 + i) * g.in_w + x0) * W;
        for (int j = 0; j < 6; ++j) d[i][j] = load_lanes<W>(row + j * W);
      }
    } else {  // the padding reads as zeros
      for (int i = 0; i < 6; ++i) {
        for (int j = 0; j < 6; ++j) {
          const int64_t y = y0 + i, x = x0 + j;
          const bool inside = y >= 0 && y < g.in_h && x >= 0 && x < g.in_w;
          d[i][j] = inside ? load_lanes<W>(block + (y * g.in_w + x) * W) : V{};
        }
      }
    }
    V cols[6][6];  // B^T d, column by column
    for (int j = 0; j < 6; ++j) {
      const V column[6] = {d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]};
      V r[6];
      input_1d(column, r);
      for (int i = 0; i < 6; ++i) cols[i][j] = r[i];
    }
    float* out = v + t * g.in_channels + cb * W;
    const int64_t point_stride = run.stride * g.in_channels;
    for (int i = 0; i < 6; ++i) {
      V r[6];
      input_1d(cols[i], r);
      for (int j = 0; j < 6; ++j) store_lanes<W>(out + (i * 6 + j) * point_stride, r[j]);
    }
  }
}

template <int W>
ARCFORGE_INLINE typename Lanes<W>::f32 apply(const Epilogue& e, typename Lanes<W>::f32 x, int64_t block,
                                           const float* addend) {
  using V = typename Lanes<W>::f32;
  switch (e.kind) {
    case Epilogue::Kind::clamp: {
      const V low = V{} + e.alpha, high = V{} + e.beta;
      x = x > low ? x : low;
      return x < high ? x : high;
    }
    case Epilogue::Kind::leaky_relu: return x > V{} ? x : x * e.alpha;
    case Epilogue::Kind::scale: return x * e.alpha;
    case Epilogue::Kind::prelu: {
      const V slope = e.per_channel ? load_lanes<W>(e.slope + block * W) : V{} + e.slope[0];
      return x > V{} ? x : x * slope;
    }
    case Epilogue::Kind::add: return x + load_lanes<W>(addend);
  }
  return x;
}

template <int W>
ARCFORGE_INLINE void output_range(const Geometry& g, const float* m, const TileRun& run, const float* bias,
                                  const std::vector<Epilogue>& epilogue, const std::vector<const float*>& addends,
                                  float* dst, int64_t begin, int64_t end) {
  using V = typename Lanes<W>::f32;
  const int64_t blocks = g.out_channels / W;
  const int64_t plane = g.out_h * g.out_w * W;
  const int64_t point_stride = run.stride * g.out_channels;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t t = item / blocks, kb = item % blocks;
    const TileAt at = tile_at(g, run.first_tile + t);
    const float* in = m + t * g.out_channels + kb * W;
    V rows[4][6];  // A^T m, column by column
    for (int j = 0; j < 6; ++j) {
      const V column[6] = {load_lanes<W>(in + j * point_stride),        load_lanes<W>(in + (6 + j) * point_stride),
                           load_lanes<W>(in + (12 + j) * point_stride), load_lanes<W>(in + (18 + j) * point_stride),
                           load_lanes<W>(in + (24 + j) * point_stride), load_lanes<W>(in + (30 + j) * point_stride)};
      V r[4];
      output_1d(column, r);
      for (int i = 0; i < 4; ++i) rows[i][j] = r[i];
    }
    const V b = bias ? load_lanes<W>(bias + kb * W) : V{};
    const int64_t offset = (at.image * blocks + kb) * plane;
    for (int i = 0; i < 4 && at.y + i < g.out_h; ++i) {
      V r[4];
      output_1d(rows[i], r);
      for (int j = 0; j < 4 && at.x + j < g.out_w; ++j) {
        const int64_t at_pixel = offset + ((at.y + i) * g.out_w + at.x + j) * W;
        V x = r[j] + b;
        for (const Epilogue& e : epilogue) {
          x = apply<W>(e, x, kb, e.kind == Epilogue::Kind::add ? addends[e.addend] + at_pixel : nullptr);
        }
        store_lanes<W>(dst + at_pixel, x);
      }
    }
  }
}

// Per instruction set, both block widths (the AVX-512 layout is only chosen where AVX-512 runs).
#define ARCFORGE_WINOGRAD_RANGES(SUFFIX, ATTRIBUTES, N)                                                           \
  template <int W>                                                                                                \
  ATTRIBUTES void input_##SUFFIX(const Geometry& g, const float* src, const TileRun& run, float* v, int64_t begin, \
                                 int64_t end) {                                                                   \
    input_range<W>(g, src, run, v, begin, end);                                                                   \
  }                                                                                                               \
  template <int W>                                                                                                \
  ATTRIBUTES void output_##SUFFIX(const Geometry& g, const float* m, const TileRun& run, const float* bias,        \
                                  const std::vector<Epilogue>& epilogue, const std::vector<const float*>& addends, \
                                  float* dst, int64_t begin, int64_t end) {                                       \
    output_range<W>(g, m, run, bias, epilogue, addends, dst, begin, end);                                         \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_WINOGRAD_RANGES)
#undef ARCFORGE_WINOGRAD_RANGES

template <int W>
void input_for_isa(const Geometry& g, const float* src, const TileRun& run, float* v, int64_t begin, int64_t end) {
  ARCFORGE_ISA_DISPATCH_TEMPLATE(input, W, g, src, run, v, begin, end)
}

template <int W>
void output_for_isa(const Geometry& g, const float* m, const TileRun& run, const float* bias,
                    const std::vector<Epilogue>& epilogue, const std::vector<const float*>& addends, float* dst,
                    int64_t begin, int64_t end) {
  ARCFORGE_ISA_DISPATCH_TEMPLATE(output, W, g, m, run, bias, epilogue, addends, dst, begin, end)
}

}  // namespace

std::vector<float> transform_weights(const float* weights, int64_t out_channels, int64_t in_channels) {
  static constexpr double G[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  std::vector<float> u(static_cast<std::size_t>(kPoints * in_channels * out_channels));
  const int64_t k_count = out_channels;
  // Per input channel, over the threads: its 3x3 kernels gathered for every output channel, then
  // G g G^T with the output channel innermost, so that each loop runs along a contiguous row.
#pragma omp parallel
  {
    std::vector<double> g(static_cast<std::size_t>(9 * k_count)), gg(static_cast<std::size_t>(18 * k_count));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < in_channels; ++c) {
      for (int64_t k = 0; k < k_count; ++k) {
        for (int e = 0; e < 9; ++e) g[e * k_count + k] = weights[(k * in_channels + c) * 9 + e];
      }
      for (int i = 0; i < 6; ++i) {  // gg = G g, rows i, columns b
        for (int b = 0; b < 3; ++b) {
          double* out = &gg[(i * 3 + b) * k_count];
          const double* g0 = &g[b * k_count];
          const double* g1 = &g[(3 + b) * k_count];
          const double* g2 = &g[(6 + b) * k_count];
          for (int64_t k = 0; k < k_count; ++k) out[k] = G[i][0] * g0[k] + G[i][1] * g1[k] + G[i][2] * g2[k];
        }
      }
      for (int i = 0; i < 6; ++i) {  // u = gg G^T
        const double* r0 = &gg[(i * 3) * k_count];
        const double* r1 = &gg[(i * 3 + 1) * k_count];
        const double* r2 = &gg[(i * 3 + 2) * k_count];
        for (int j = 0; j < 6; ++j) {
          float* out = &u[((i * 6 + j) * in_channels + c) * k_count];
          for (int64_t k = 0; k < k_count; ++k) {
            out[k] = static_cast<float>(r0[k] * G[j][0] + r1[k] * G[j][1] + r2[k] * G[j][2]);
          }
        }
      }
    }
  }
  return u;
}

void transform_input(const Geometry& g, const float* src, const TileRun& run, float* v, int64_t begin, int64_t end) {
  if (g.layout_block == 16) return input_for_isa<16>(g, src, run, v, begin, end);
  input_for_isa<8>(g, src, run, v, begin, end);
}

void transform_output(const Geometry& g, const float* m, const TileRun& run, const float* bias,
                      const std::vector<Epilogue>& epilogue, const std::vector<const float*>& addends, float* dst,
                      int64_t begin, int64_t end) {
  if (g.layout_block == 16) return output_for_isa<16>(g, m, run, bias, epilogue, addends, dst, begin, end);
  output_for_isa<8>(g, m, run, bias, epilogue, addends, dst, begin, end);
}

}  // namespace arcforge::runtime::detail::winograd
