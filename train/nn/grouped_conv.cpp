#include "train/nn/grouped_conv.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "train/compat/torch_compat.hpp"
#include "train/nn/cpu_lanes.hpp"
#include "train/nn/traced_op.hpp"

namespace arcforge::nn {
namespace {

using namespace lanes;  // loads, stores, Lanes, elements, dispatch_float_or_bf16

// Sizes of one convolution; x is [batch, height, width, channels] in memory (channels-last), the
// weight [channels, per_group, kernel_h, kernel_w].
struct Geometry {
  int64_t batch = 0, height = 0, width = 0, channels = 0, out_height = 0, out_width = 0;
  int64_t kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int per_group = 1;
  int64_t taps() const { return kernel_h * kernel_w; }
};

Geometry geometry_of(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec) {
  Geometry g;
  g.batch = x.size(0);
  g.channels = x.size(1);
  g.height = x.size(2);
  g.width = x.size(3);
  g.kernel_h = weight.size(2);
  g.kernel_w = weight.size(3);
  g.stride_h = spec.stride[0];
  g.stride_w = spec.stride[1];
  g.pad_h = spec.padding[0];
  g.pad_w = spec.padding[1];
  g.per_group = static_cast<int>(weight.size(1));
  g.out_height = (g.height + 2 * g.pad_h - g.kernel_h) / g.stride_h + 1;
  g.out_width = (g.width + 2 * g.pad_w - g.kernel_w) / g.stride_w + 1;
  return g;
}

// With two channels per group, output channel c sums its own input channel and its partner c ^ 1
// (the other of its pair). Every loop below therefore runs over channels with, per kernel tap, one
// product with the element at c and one with the element at c ^ 1, each with its own weight table
// laid out [tap][channel]: "own" and "partner" (the tables differ between forward and backward).
//
// forward:          y[c]     += x[c] * w[c][c%2]           + x[c^1] * w[c][(c^1)%2]
// input gradient:   gx[c]    += gy[c] * w[c][c%2]          + gy[c^1] * w[c^1][c%2]
// weight gradient:  gw[c][c%2] += gy[c] * x[c],  gw[c][(c^1)%2] += gy[c] * x[c^1]
struct WeightTables {
  std::vector<float> own, partner;  // [tap][channel]; partner empty with one channel per group
};

enum class Pass { forward, input_gradient };

// forward: own w[c][c%2], partner w[c][(c^1)%2]. The input gradient runs the same loop as forward
// over gy, with each tap's weight at its mirror position (see input_gradient_taps) and the
// partner's weight for this channel: own w[c][c%2], partner w[c^1][c%2].
WeightTables weight_tables(const torch::Tensor& weight, const Geometry& g, Pass pass) {
  const torch::Tensor w = weight.detach().to(torch::kFloat).contiguous();
  const float* data = w.data_ptr<float>();
  const int64_t taps = g.taps(), per_group = g.per_group;
  WeightTables t;
  t.own.resize(static_cast<size_t>(taps * g.channels));
  if (per_group == 2) t.partner.resize(t.own.size());
  for (int64_t c = 0; c < g.channels; ++c) {
    const int64_t j = c % per_group;
    const int64_t partner_row = pass == Pass::forward ? c * per_group + (1 - j) : (c ^ 1) * per_group + j;
    for (int64_t tap = 0; tap < taps; ++tap) {
      t.own[tap * g.channels + c] = data[(c * per_group + j) * taps + tap];
      if (per_group == 2) t.partner[tap * g.channels + c] = data[partner_row * taps + tap];
    }
  }
  return t;
}

// One kernel tap that lands inside the image: its index in the weight table and the element offset
// of its pixel in the tensor it reads.
struct Tap {
  int64_t index = 0, offset = 0;
};

// The taps of output pixel (oh, ow) that read x inside the image (zero padding contributes nothing).
int forward_taps(const Geometry& g, int64_t oh, int64_t ow, Tap* taps) {
  int count = 0;
  for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
    const int64_t ih = oh * g.stride_h - g.pad_h + kh;
    if (ih < 0 || ih >= g.height) continue;
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t iw = ow * g.stride_w - g.pad_w + kw;
      if (iw < 0 || iw >= g.width) continue;
      taps[count++] = Tap{kh * g.kernel_w + kw, (ih * g.width + iw) * g.channels};
    }
  }
  return count;
}

// The output pixels that input pixel (ih, iw) fed, each with the tap that read it: the input's
// gradient gathers gy from them (with a stride, only the taps whose offset it divides).
int input_gradient_taps(const Geometry& g, int64_t ih, int64_t iw, Tap* taps) {
  int count = 0;
  for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
    const int64_t row = ih + g.pad_h - kh;
    if (row < 0 || row % g.stride_h != 0 || row / g.stride_h >= g.out_height) continue;
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t col = iw + g.pad_w - kw;
      if (col < 0 || col % g.stride_w != 0 || col / g.stride_w >= g.out_width) continue;
      taps[count++] = Tap{kh * g.kernel_w + kw, (row / g.stride_h * g.out_width + col / g.stride_w) * g.channels};
    }
  }
  return count;
}


// Lanes 2k and 2k+1 exchanged: the partner channels of a vector that starts at an even channel.
template <int N>
ARCFORGE_INLINE typename Lanes<N>::f32 swap_pairs(typename Lanes<N>::f32 v) {
  using L = Lanes<N>;
  if constexpr (N == 16) {
    return __builtin_shuffle(v, typename L::i32{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
  } else {
    static_assert(N == 8);
    return __builtin_shuffle(v, typename L::i32{1, 0, 3, 2, 5, 4, 7, 6});
  }
}

// One pixel of the output (forward) or of the input's gradient: out[c] = sum over taps of
// src[tap.offset + c] * own[tap][c] (+ src[tap.offset + (c^1)] * partner[tap][c]).
template <int N, int PerGroup, typename S>
ARCFORGE_INLINE void gather_pixel(const S* __restrict src, const Tap* taps, int count, const float* __restrict own,
                                  const float* __restrict partner, int64_t channels, S* __restrict out) {
  int64_t c = 0;
  if constexpr (N > 0) {
    for (; c + N <= channels; c += N) {
      typename Lanes<N>::f32 acc{};
      for (int t = 0; t < count; ++t) {
        const auto v = load_lanes<N>(src + taps[t].offset + c);
        acc += v * load_lanes<N>(own + taps[t].index * channels + c);
        if constexpr (PerGroup == 2) acc += swap_pairs<N>(v) * load_lanes<N>(partner + taps[t].index * channels + c);
      }
      store_lanes<N>(out + c, acc);
    }
  }
  for (; c < channels; ++c) {
    float acc = 0.0f;
    for (int t = 0; t < count; ++t) {
      acc += load(src[taps[t].offset + c]) * own[taps[t].index * channels + c];
      if constexpr (PerGroup == 2) acc += load(src[taps[t].offset + (c ^ 1)]) * partner[taps[t].index * channels + c];
    }
    store(out[c], acc);
  }
}

// The weight's gradient from one output pixel: own[tap][c] += gy[c] * x[tap.offset + c] and
// partner[tap][c] += gy[c] * x[tap.offset + (c^1)].
template <int N, int PerGroup, typename S>
ARCFORGE_INLINE void accumulate_weight_gradient(const S* __restrict x, const S* __restrict gy, const Tap* taps,
                                                int count, int64_t channels, float* __restrict own,
                                                float* __restrict partner) {
  int64_t c = 0;
  if constexpr (N > 0) {
    for (; c + N <= channels; c += N) {
      const auto d = load_lanes<N>(gy + c);
      for (int t = 0; t < count; ++t) {
        const auto v = load_lanes<N>(x + taps[t].offset + c);
        float* o = own + taps[t].index * channels + c;
        store_lanes<N>(o, load_lanes<N>(o) + d * v);
        if constexpr (PerGroup == 2) {
          float* p = partner + taps[t].index * channels + c;
          store_lanes<N>(p, load_lanes<N>(p) + d * swap_pairs<N>(v));
        }
      }
    }
  }
  for (; c < channels; ++c) {
    const float d = load(gy[c]);
    for (int t = 0; t < count; ++t) {
      own[taps[t].index * channels + c] += d * load(x[taps[t].offset + c]);
      if constexpr (PerGroup == 2) partner[taps[t].index * channels + c] += d * load(x[taps[t].offset + (c ^ 1)]);
    }
  }
}

// MobileFaceNet's layers are 3x3 with padding 1, stride 1 or 2. For them, with whole vectors of
// channels, a row is swept with its 3x3 window of input columns held in registers: each step
// loads the new column(s) only (1 of 3 at stride 1, 2 at stride 2), a third of the loads and bf16
// conversions of the general path, and the weight gradient's 9 (or 18) sums stay in registers for
// the whole row.
bool is_3x3_pad_1(const Geometry& g) {
  return g.kernel_h == 3 && g.kernel_w == 3 && g.pad_h == 1 && g.pad_w == 1 && g.stride_h == g.stride_w &&
         (g.stride_h == 1 || g.stride_h == 2);
}

// A sliding window over the three rows `rows` (a row of zeros stands for one outside the image):
// at step ow, column k of the window is input column ow * Stride - 1 + k, zero outside the image.
template <int N, int Stride, typename S>
struct Window3x3 {
  using V = typename Lanes<N>::f32;
  const S* const* rows;
  int64_t channels, width, c;
  V v[3][3];

  ARCFORGE_INLINE V column(int r, int64_t iw) const {
    return iw >= 0 && iw < width ? load_lanes<N>(rows[r] + iw * channels + c) : V{};
  }
  ARCFORGE_INLINE void start() {
    for (int r = 0; r < 3; ++r) {
      v[r][0] = V{};  // column -1
      if constexpr (Stride == 1) v[r][1] = column(r, 0);
    }
  }
  // Loads the columns that step ow adds; call advance() after using it.
  ARCFORGE_INLINE void load(int64_t ow) {
    const int64_t left = ow * Stride - 1;
    for (int r = 0; r < 3; ++r) {
      if constexpr (Stride == 2) v[r][1] = column(r, left + 1);
      v[r][2] = column(r, left + 2);
    }
  }
  ARCFORGE_INLINE void advance() {
    for (int r = 0; r < 3; ++r) {
      if constexpr (Stride == 1) v[r][0] = v[r][1], v[r][1] = v[r][2];
      else v[r][0] = v[r][2];
    }
  }
};

// One row of a 3x3 convolution, as gather_pixel for every pixel of the row. Flip reads the weight
// tables in reverse tap order: the input gradient at stride 1 is the convolution of gy with the
// kernel turned by 180 degrees.
template <int N, int PerGroup, int Stride, bool Flip, typename S>
ARCFORGE_INLINE void gather_row_3x3(const S* const rows[3], S* __restrict out, const float* __restrict own,
                                    const float* __restrict partner, int64_t channels, int64_t width,
                                    int64_t out_width) {
  using V = typename Lanes<N>::f32;
  for (int64_t c = 0; c < channels; c += N) {
    V w0[9], w1[9];
    for (int t = 0; t < 9; ++t) {
      const int64_t at = (Flip ? 8 - t : t) * channels + c;
      w0[t] = load_lanes<N>(own + at);
      if constexpr (PerGroup == 2) w1[t] = load_lanes<N>(partner + at);
    }
    Window3x3<N, Stride, S> window{rows, channels, width, c, {}};
    window.start();
    for (int64_t ow = 0; ow < out_width; ++ow) {
      window.load(ow);
      V acc{};
      for (int r = 0; r < 3; ++r) {
        for (int k = 0; k < 3; ++k) {
          acc += window.v[r][k] * w0[r * 3 + k];
          if constexpr (PerGroup == 2) acc += swap_pairs<N>(window.v[r][k]) * w1[r * 3 + k];
        }
      }
      store_lanes<N>(out + ow * channels + c, acc);
      window.advance();
    }
  }
}

// One output row's contribution to the weight gradient of a 3x3 convolution (as
// accumulate_weight_gradient for every pixel of the row), added to own and partner.
template <int N, int PerGroup, int Stride, typename S>
ARCFORGE_INLINE void weight_gradient_row_3x3(const S* const rows[3], const S* __restrict gy, float* __restrict own,
                                             float* __restrict partner, int64_t channels, int64_t width,
                                             int64_t out_width) {
  using V = typename Lanes<N>::f32;
  for (int64_t c = 0; c < channels; c += N) {
    V a0[9] = {}, a1[9] = {};
    Window3x3<N, Stride, S> window{rows, channels, width, c, {}};
    window.start();
    for (int64_t ow = 0; ow < out_width; ++ow) {
      window.load(ow);
      const V d = load_lanes<N>(gy + ow * channels + c);
      for (int r = 0; r < 3; ++r) {
        for (int k = 0; k < 3; ++k) {
          a0[r * 3 + k] += d * window.v[r][k];
          if constexpr (PerGroup == 2) a1[r * 3 + k] += d * swap_pairs<N>(window.v[r][k]);
        }
      }
      window.advance();
    }
    for (int t = 0; t < 9; ++t) {
      store_lanes<N>(own + t * channels + c, load_lanes<N>(own + t * channels + c) + a0[t]);
      if constexpr (PerGroup == 2)
        store_lanes<N>(partner + t * channels + c, load_lanes<N>(partner + t * channels + c) + a1[t]);
    }
  }
}

// The three rows of an image centred on row `centre`, a row of zeros for one outside it: x's rows
// under output row oh are centred on oh * stride, gy's rows feeding input row ih (stride 1) on ih.
template <typename S>
void rows_3x3(const S* image, const S* zeros, int64_t centre, int64_t height, int64_t row_elements, const S* rows[3]) {
  for (int r = 0; r < 3; ++r) {
    const int64_t ih = centre - 1 + r;
    rows[r] = ih >= 0 && ih < height ? image + ih * row_elements : zeros;
  }
}

// Rows of output pixels (forward), of input pixels (input gradient), and of output pixels feeding
// the weight's gradient, one copy per instruction set with the pixel loops inlined. A row is
// (image, row) flattened; `taps` has room for a whole kernel.
#define ARCFORGE_GROUPED_CONV_ROWS(SUFFIX, ATTRIBUTES, N)                                                    \
  template <int PerGroup, typename S>                                                                       \
  ATTRIBUTES void forward_rows_##SUFFIX(const S* x, S* y, const WeightTables* w, const Geometry* g,         \
                                        int64_t begin, int64_t end, Tap* taps, const S* zeros) {            \
    const int64_t c = g->channels;                                                                          \
    for (int64_t row = begin; row < end; ++row) {                                                           \
      const int64_t n = row / g->out_height, oh = row % g->out_height;                                      \
      const S* image = x + n * g->height * g->width * c;                                                    \
      if constexpr (N > 0) {                                                                                \
        if (is_3x3_pad_1(*g) && c % std::max(N, 1) == 0) {                                                               \
          const S* rows[3];                                                                                 \
          rows_3x3(image, zeros, oh * g->stride_h, g->height, g->width * c, rows);                          \
          S* out = y + row * g->out_width * c;                                                              \
          if (g->stride_h == 1)                                                                             \
            gather_row_3x3<N, PerGroup, 1, false>(rows, out, w->own.data(), w->partner.data(), c, g->width, \
                                                  g->out_width);                                            \
          else                                                                                              \
            gather_row_3x3<N, PerGroup, 2, false>(rows, out, w->own.data(), w->partner.data(), c, g->width, \
                                                  g->out_width);                                            \
          continue;                                                                                         \
        }                                                                                                   \
      }                                                                                                     \
      for (int64_t ow = 0; ow < g->out_width; ++ow) {                                                       \
        const int count = forward_taps(*g, oh, ow, taps);                                                   \
        gather_pixel<N, PerGroup>(image, taps, count, w->own.data(), w->partner.data(), c,                 \
                                  y + (row * g->out_width + ow) * c);                                       \
      }                                                                                                     \
    }                                                                                                       \
  }                                                                                                         \
  template <int PerGroup, typename S>                                                                       \
  ATTRIBUTES void input_gradient_rows_##SUFFIX(const S* gy, S* gx, const WeightTables* w, const Geometry* g, \
                                               int64_t begin, int64_t end, Tap* taps, const S* zeros) {     \
    const int64_t c = g->channels;                                                                          \
    for (int64_t row = begin; row < end; ++row) {                                                           \
      const int64_t n = row / g->height, ih = row % g->height;                                              \
      const S* image = gy + n * g->out_height * g->out_width * c;                                           \
      if constexpr (N > 0) {                                                                                \
        if (is_3x3_pad_1(*g) && g->stride_h == 1 && c % std::max(N, 1) == 0) {                                           \
          const S* rows[3];                                                                                 \
          rows_3x3(image, zeros, ih, g->out_height, g->out_width * c, rows);                                \
          gather_row_3x3<N, PerGroup, 1, true>(rows, gx + row * g->width * c, w->own.data(), w->partner.data(), \
                                               c, g->out_width, g->width);                                  \
          continue;                                                                                         \
        }                                                                                                   \
      }                                                                                                     \
      for (int64_t iw = 0; iw < g->width; ++iw) {                                                           \
        const int count = input_gradient_taps(*g, ih, iw, taps);                                            \
        gather_pixel<N, PerGroup>(image, taps, count, w->own.data(), w->partner.data(), c,                 \
                                  gx + (row * g->width + iw) * c);                                          \
      }                                                                                                     \
    }                                                                                                       \
  }                                                                                                         \
  template <int PerGroup, typename S>                                                                       \
  ATTRIBUTES void weight_gradient_row_##SUFFIX(const S* x, const S* gy, const Geometry* g, int64_t row,     \
                                               float* own, float* partner, Tap* taps, const S* zeros) {     \
    const int64_t c = g->channels;                                                                          \
    const int64_t n = row / g->out_height, oh = row % g->out_height;                                        \
    const S* image = x + n * g->height * g->width * c;                                                      \
    if constexpr (N > 0) {                                                                                  \
      if (is_3x3_pad_1(*g) && c % std::max(N, 1) == 0) {                                                                 \
        const S* rows[3];                                                                                   \
        rows_3x3(image, zeros, oh * g->stride_h, g->height, g->width * c, rows);                            \
        const S* d = gy + row * g->out_width * c;                                                           \
        if (g->stride_h == 1)                                                                               \
          weight_gradient_row_3x3<N, PerGroup, 1>(rows, d, own, partner, c, g->width, g->out_width);        \
        else                                                                                                \
          weight_gradient_row_3x3<N, PerGroup, 2>(rows, d, own, partner, c, g->width, g->out_width);        \
        return;                                                                                             \
      }                                                                                                     \
    }                                                                                                       \
    for (int64_t ow = 0; ow < g->out_width; ++ow) {                                                         \
      const int count = forward_taps(*g, oh, ow, taps);                                                     \
      accumulate_weight_gradient<N, PerGroup>(image, gy + (row * g->out_width + ow) * c, taps, count, c, own, \
                                              partner);                                                     \
    }                                                                                                       \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_GROUPED_CONV_ROWS)
#undef ARCFORGE_GROUPED_CONV_ROWS

// Output rows per parallel task: at least ~64k multiply-adds each.
int64_t grain_rows(const Geometry& g, int64_t pixels_per_row) {
  const int64_t work = std::max<int64_t>(1, pixels_per_row * g.channels * g.taps() * g.per_group);
  return std::max<int64_t>(1, 65536 / work);
}

template <int PerGroup, typename S>
void forward_kernel(const S* x, S* y, const WeightTables& w, const Geometry& g) {
  at::parallel_for(0, g.batch * g.out_height, grain_rows(g, g.out_width), [&](int64_t begin, int64_t end) {
    std::vector<Tap> taps(static_cast<size_t>(g.taps()));
    const std::vector<S> zeros(static_cast<size_t>(g.width * g.channels));
    ARCFORGE_ISA_DISPATCH_TEMPLATE(forward_rows, PerGroup, x, y, &w, &g, begin, end, taps.data(), zeros.data())
  });
}

template <int PerGroup, typename S>
void input_gradient_kernel(const S* gy, S* gx, const WeightTables& w, const Geometry& g) {
  at::parallel_for(0, g.batch * g.height, grain_rows(g, g.width), [&](int64_t begin, int64_t end) {
    std::vector<Tap> taps(static_cast<size_t>(g.taps()));
    const std::vector<S> zeros(static_cast<size_t>(g.out_width * g.channels));
    ARCFORGE_ISA_DISPATCH_TEMPLATE(input_gradient_rows, PerGroup, gy, gx, &w, &g, begin, end, taps.data(), zeros.data())
  });
}

// Output pixels summed in float before the sums join the thread's doubles: rows of at least this
// many (a flush per 14- or 7-pixel row doubled the weight gradient's time on mbf's small maps).
constexpr int64_t kFlushPixels = 56;

// Returns the weight's gradient as [channels, per_group, taps] doubles. Output rows are summed in
// float (kFlushPixels products or a row's worth per element), then added to the thread's double sums.
template <int PerGroup, typename S>
std::vector<double> weight_gradient_kernel(const S* x, const S* gy, const Geometry& g) {
  const int64_t table = g.taps() * g.channels;  // one [tap][channel] table
  const int threads = at::get_num_threads();
  std::vector<double> partial(static_cast<size_t>(threads * PerGroup * table), 0.0);
  at::parallel_for(0, g.batch * g.out_height, grain_rows(g, g.out_width), [&](int64_t begin, int64_t end) {
    std::vector<Tap> taps(static_cast<size_t>(g.taps()));
    std::vector<float> row_sums(static_cast<size_t>(PerGroup * table));
    const std::vector<S> zeros(static_cast<size_t>(g.width * g.channels));
    double* sums = partial.data() + static_cast<int64_t>(at::get_thread_num()) * PerGroup * table;
    float* own = row_sums.data();
    float* partner = own + table;
    int64_t pixels = 0;  // summed in row_sums since the last flush
    for (int64_t row = begin; row < end; ++row) {
      [&] { ARCFORGE_ISA_DISPATCH_TEMPLATE(weight_gradient_row, PerGroup, x, gy, &g, row, own, partner, taps.data(),
                                                 zeros.data()) }();
      pixels += g.out_width;
      if (pixels >= kFlushPixels || row + 1 == end) {
        for (size_t i = 0; i < row_sums.size(); ++i) sums[i] += row_sums[i];
        std::fill(row_sums.begin(), row_sums.end(), 0.0f);
        pixels = 0;
      }
    }
  });
  // Back to the weight's layout: own[tap][c] is w[c][c%2][tap], partner[tap][c] is w[c][(c^1)%2][tap].
  std::vector<double> gradient(static_cast<size_t>(PerGroup * table), 0.0);
  for (int t = 0; t < threads; ++t) {
    const double* sums = partial.data() + static_cast<int64_t>(t) * PerGroup * table;
    for (int64_t tap = 0; tap < g.taps(); ++tap) {
      for (int64_t c = 0; c < g.channels; ++c) {
        const int64_t j = c % PerGroup;
        gradient[(c * PerGroup + j) * g.taps() + tap] += sums[tap * g.channels + c];
        if constexpr (PerGroup == 2) gradient[(c * PerGroup + (1 - j)) * g.taps() + tap] += sums[table + tap * g.channels + c];
      }
    }
  }
  return gradient;
}

// Calls fn with the element type (as dispatch_float_or_bf16) and the channels per group (1 or 2).
template <typename Fn>
void dispatch(const torch::Tensor& x, const Geometry& g, Fn&& fn) {
  dispatch_float_or_bf16(x, [&](auto tag) {
    if (g.per_group == 1) {
      fn(tag, std::integral_constant<int, 1>{});
    } else {
      fn(tag, std::integral_constant<int, 2>{});
    }
  });
}

// x and the weight as at::conv2d sees them: cast to the autocast dtype when CPU autocast is on
// (conv2d's autocast policy), else as they are.
std::pair<torch::Tensor, torch::Tensor> autocast_conv_inputs(const torch::Tensor& x, const torch::Tensor& weight) {
  if (x.device().is_cpu() && compat::autocast_enabled(torch::kCPU) && x.is_floating_point()) {
    const at::ScalarType dtype = compat::autocast_dtype(torch::kCPU);
    return {x.to(dtype), weight.to(dtype)};
  }
  return {x, weight};
}

class GroupedConvFunction : public torch::autograd::Function<GroupedConvFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const GroupedConvSpec& spec) {
    const Geometry g = geometry_of(x, weight, spec);
    const WeightTables w = weight_tables(weight, g, Pass::forward);
    torch::Tensor y = torch::empty({g.batch, g.channels, g.out_height, g.out_width}, x.options(),
                                   at::MemoryFormat::ChannelsLast);
    dispatch(x, g, [&](auto tag, auto per_group) {
      using S = decltype(tag);
      forward_kernel<decltype(per_group)::value, S>(elements<S>(x), elements<S>(y), w, g);
    });
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride_h"] = spec.stride[0];
    ctx->saved_data["stride_w"] = spec.stride[1];
    ctx->saved_data["pad_h"] = spec.padding[0];
    ctx->saved_data["pad_w"] = spec.padding[1];
    ctx->saved_data["groups"] = spec.groups;
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& weight = saved[1];
    GroupedConvSpec spec;
    spec.stride = {ctx->saved_data["stride_h"].toInt(), ctx->saved_data["stride_w"].toInt()};
    spec.padding = {ctx->saved_data["pad_h"].toInt(), ctx->saved_data["pad_w"].toInt()};
    spec.groups = ctx->saved_data["groups"].toInt();
    const Geometry g = geometry_of(x, weight, spec);
    const torch::Tensor gy = grads[0].to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
    torch::Tensor gx, gw;
    dispatch(x, g, [&](auto tag, auto per_group) {
      using S = decltype(tag);
      constexpr int PerGroup = decltype(per_group)::value;
      if (ctx->needs_input_grad(0)) {
        const WeightTables w = weight_tables(weight, g, Pass::input_gradient);
        gx = torch::empty_like(x, x.options(), at::MemoryFormat::ChannelsLast);
        input_gradient_kernel<PerGroup, S>(elements<S>(gy), elements<S>(gx), w, g);
      }
      if (ctx->needs_input_grad(1)) {
        std::vector<double> sums = weight_gradient_kernel<PerGroup, S>(elements<S>(x), elements<S>(gy), g);
        gw = torch::tensor(sums, torch::kDouble).reshape(weight.sizes()).to(weight.scalar_type());
      }
    });
    return {gx, gw, torch::Tensor()};
  }
};

}  // namespace

bool grouped_conv_uses_cpu_kernel(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec) {
  if (!x.device().is_cpu() || !weight.device().is_cpu() || x.dim() != 4 || weight.dim() != 4) return false;
  if (x.scalar_type() != weight.scalar_type()) return false;
  if (x.scalar_type() != torch::kFloat && x.scalar_type() != torch::kBFloat16) return false;
  if (x.numel() == 0 || !x.is_contiguous(at::MemoryFormat::ChannelsLast)) return false;
  const int64_t channels = x.size(1);
  if (spec.groups < 1 || channels % spec.groups != 0) return false;
  const int64_t per_group = channels / spec.groups;
  if (per_group > 2 || weight.size(0) != channels || weight.size(1) != per_group) return false;
  if (spec.stride[0] < 1 || spec.stride[1] < 1 || spec.padding[0] < 0 || spec.padding[1] < 0) return false;
  return x.size(2) + 2 * spec.padding[0] >= weight.size(2) && x.size(3) + 2 * spec.padding[1] >= weight.size(3);
}

torch::Tensor grouped_conv2d(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec) {
  const auto [input, w] = autocast_conv_inputs(x, weight);
  if (!grouped_conv_uses_cpu_kernel(input, w, spec)) {
    return at::conv2d(x, weight, {}, {spec.stride[0], spec.stride[1]}, {spec.padding[0], spec.padding[1]}, {1, 1},
                      spec.groups);
  }
  ARCFORGE_TRACE_OP("arcforge::grouped_conv");
  return GroupedConvFunction::apply(input, w, spec);
}

}  // namespace arcforge::nn
