// The F(4x4, 3x3) transforms (winograd.hpp). Every value is a vector of one pixel's 8 channels of an
// nChw8c block, so the transforms run 8 channels at a time with no shuffles. The matrices
// (Lavin and Gray, section 4.2; points 0, +-1, +-2 and infinity):
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

typedef float V8 __attribute__((vector_size(32)));

ARCFORGE_INLINE V8 load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

ARCFORGE_INLINE void store8(float* p, V8 v) { std::memcpy(p, &v, sizeof v); }

ARCFORGE_INLINE V8 broadcast8(float x) { return V8{} + x; }

ARCFORGE_INLINE V8 max8(V8 a, V8 b) { return a > b ? a : b; }

ARCFORGE_INLINE V8 min8(V8 a, V8 b) { return a < b ? a : b; }

// B^T x for one column of six values (also x B for a row).
ARCFORGE_INLINE void input_1d(const V8 (&d)[6], V8 (&r)[6]) {
  r[0] = 4 * d[0] - 5 * d[2] + d[4];
  r[1] = -4 * (d[1] + d[2]) + d[3] + d[4];
  r[2] = 4 * (d[1] - d[2]) - d[3] + d[4];
  r[3] = 2 * (d[3] - d[1]) - d[2] + d[4];
  r[4] = 2 * (d[1] - d[3]) - d[2] + d[4];
  r[5] = 4 * d[1] - 5 * d[3] + d[5];
}

// A^T m for one column of six values (also m A for a row).
ARCFORGE_INLINE void output_1d(const V8 (&m)[6], V8 (&r)[4]) {
  const V8 a1 = m[1] + m[2], a2 = m[1] - m[2], a3 = m[3] + m[4], a4 = m[3] - m[4];
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

ARCFORGE_INLINE void input_range(const Geometry& g, const float* src, const TileRun& run, float* v, int64_t begin,
                                 int64_t end) {
  const int64_t blocks = g.in_channels / kBlock;
  const int64_t plane = g.in_h * g.in_w * kBlock;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t t = item / blocks, cb = item % blocks;
    const TileAt at = tile_at(g, run.first_tile + t);
    const float* block = src + (at.image * blocks + cb) * plane;
    const int64_t y0 = at.y - g.pad_t, x0 = at.x - g.pad_l;
    V8 d[6][6];
    if (y0 >= 0 && x0 >= 0 && y0 + 6 <= g.in_h && x0 + 6 <= g.in_w) {
      for (int i = 0; i < 6; ++i) {
        const float* row = block + ((y0 + i) * g.in_w + x0) * kBlock;
        for (int j = 0; j < 6; ++j) d[i][j] = load8(row + j * kBlock);
      }
    } else {  // the padding reads as zeros
      for (int i = 0; i < 6; ++i) {
        for (int j = 0; j < 6; ++j) {
          const int64_t y = y0 + i, x = x0 + j;
          const bool inside = y >= 0 && y < g.in_h && x >= 0 && x < g.in_w;
          d[i][j] = inside ? load8(block + (y * g.in_w + x) * kBlock) : V8{};
        }
      }
    }
    V8 cols[6][6];  // B^T d, column by column
    for (int j = 0; j < 6; ++j) {
      const V8 column[6] = {d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]};
      V8 r[6];
      input_1d(column, r);
      for (int i = 0; i < 6; ++i) cols[i][j] = r[i];
    }
    float* out = v + t * g.in_channels + cb * kBlock;
    const int64_t point_stride = run.stride * g.in_channels;
    for (int i = 0; i < 6; ++i) {
      V8 r[6];
      input_1d(cols[i], r);
      for (int j = 0; j < 6; ++j) store8(out + (i * 6 + j) * point_stride, r[j]);
    }
  }
}

ARCFORGE_INLINE V8 apply(const Epilogue& e, V8 x, int64_t block, const float* addend) {
  switch (e.kind) {
    case Epilogue::Kind::clamp: return min8(max8(x, broadcast8(e.alpha)), broadcast8(e.beta));
    case Epilogue::Kind::leaky_relu: return x > V8{} ? x : x * e.alpha;
    case Epilogue::Kind::scale: return x * e.alpha;
    case Epilogue::Kind::prelu: {
      const V8 slope = e.per_channel ? load8(e.slope + block * kBlock) : broadcast8(e.slope[0]);
      return x > V8{} ? x : x * slope;
    }
    case Epilogue::Kind::add: return x + load8(addend);
  }
  return x;
}

ARCFORGE_INLINE void output_range(const Geometry& g, const float* m, const TileRun& run, const float* bias,
                                  const std::vector<Epilogue>& epilogue, const std::vector<const float*>& addends,
                                  float* dst, int64_t begin, int64_t end) {
  const int64_t blocks = g.out_channels / kBlock;
  const int64_t plane = g.out_h * g.out_w * kBlock;
  const int64_t point_stride = run.stride * g.out_channels;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t t = item / blocks, kb = item % blocks;
    const TileAt at = tile_at(g, run.first_tile + t);
    const float* in = m + t * g.out_channels + kb * kBlock;
    V8 rows[4][6];  // A^T m, column by column
    for (int j = 0; j < 6; ++j) {
      const V8 column[6] = {load8(in + j * point_stride), load8(in + (6 + j) * point_stride),
                            load8(in + (12 + j) * point_stride), load8(in + (18 + j) * point_stride),
                            load8(in + (24 + j) * point_stride), load8(in + (30 + j) * point_stride)};
      V8 r[4];
      output_1d(column, r);
      for (int i = 0; i < 4; ++i) rows[i][j] = r[i];
    }
    const V8 b = bias ? load8(bias + kb * kBlock) : V8{};
    const int64_t offset = (at.image * blocks + kb) * plane;
    for (int i = 0; i < 4 && at.y + i < g.out_h; ++i) {
      V8 r[4];
      output_1d(rows[i], r);
      for (int j = 0; j < 4 && at.x + j < g.out_w; ++j) {
        const int64_t at_pixel = offset + ((at.y + i) * g.out_w + at.x + j) * kBlock;
        V8 x = r[j] + b;
        for (const Epilogue& e : epilogue) {
          x = apply(e, x, kb, e.kind == Epilogue::Kind::add ? addends[e.addend] + at_pixel : nullptr);
        }
        store8(dst + at_pixel, x);
      }
    }
  }
}

#define ARCFORGE_WINOGRAD_RANGES(SUFFIX, ATTRIBUTES, N)                                                           \
  ATTRIBUTES void input_##SUFFIX(const Geometry& g, const float* src, const TileRun& run, float* v, int64_t begin, \
                                 int64_t end) {                                                                   \
    input_range(g, src, run, v, begin, end);                                                                      \
  }                                                                                                               \
  ATTRIBUTES void output_##SUFFIX(const Geometry& g, const float* m, const TileRun& run, const float* bias,        \
                                  const std::vector<Epilogue>& epilogue, const std::vector<const float*>& addends, \
                                  float* dst, int64_t begin, int64_t end) {                                       \
    output_range(g, m, run, bias, epilogue, addends, dst, begin, end);                                            \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_WINOGRAD_RANGES)
#undef ARCFORGE_WINOGRAD_RANGES

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
  ARCFORGE_ISA_DISPATCH(input, g, src, run, v, begin, end)
}

void transform_output(const Geometry& g, const float* m, const TileRun& run, const float* bias,
                      const std::vector<Epilogue>& epilogue, const std::vector<const float*>& addends, float* dst,
                      int64_t begin, int64_t end) {
  ARCFORGE_ISA_DISPATCH(output, g, m, run, bias, epilogue, addends, dst, begin, end)
}

}  // namespace arcforge::runtime::detail::winograd
