// The depthwise loop (depthwise_loop.hpp): W channels at a time in GCC's vector extensions, one copy
// per instruction set (arcforge/cpu/lanes.hpp). For each output row and run of W channels, the nine
// weights stay in registers while the row's pixels are computed; the taps that fall in the padding
// are skipped (a zero input contributes nothing).
#include "depthwise_loop.hpp"

#include <algorithm>
#include <type_traits>

#include "channel_vectors.hpp"

namespace arcforge::runtime::detail {
namespace {

using cpu::lanes::Lanes;
using cpu::lanes::Bf16Native;
using cpu::lanes::load_lanes;
using Type = DepthwiseLoop::Type;

template <int W, typename S>
ARCFORGE_INLINE Vec<W> load_vec(const S* p) {
  if constexpr (W == 1) {
    return cpu::lanes::load(*p);
  } else if constexpr (std::is_same_v<S, uint16_t>) {
    // One vpmovzxwd from memory: GCC 12 widens a vector of 16 bf16 (load_lanes) in two halves
    // through the stack, which made this loop slower than oneDNN's depthwise kernel and its PReLU.
    using L = Lanes<W>;
    typedef uint16_t Half __attribute__((vector_size(2 * W), aligned(2), may_alias));
    typename L::u32 wide;
    asm("vpmovzxwd %1, %0" : "=v"(wide) : "m"(*reinterpret_cast<const Half*>(p)));
    return (typename L::f32)(wide << 16);
  } else {
    return load_lanes<W>(p);
  }
}

template <int W>
ARCFORGE_INLINE Vec<W> prelu(Vec<W> v, Vec<W> slope) {
  return v < 0.0f ? v * slope : v;
}

// Channels [c, c + W) of output row `row`. The columns whose taps all fall inside the image run
// four at a time, branch-free within each kernel row (four independent sums, and with stride 1 the
// six input pixels they share loaded once); the columns at the edges one at a time, with checks.
template <int W, typename S, typename D, bool OutputPrelu>
ARCFORGE_INLINE void channel_run(const DepthwiseLoop& d, const S* src, D* dst, int64_t row, int64_t c) {
  using V = Vec<W>;
  const int64_t n = row / d.out_h, y = row % d.out_h;
  V w[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) w[t] = load_vec<W>(d.weights.data() + t * d.channels + c);
  const V bias = load_vec<W>(d.bias.data() + c);
  V out_slope{};
  if constexpr (OutputPrelu) out_slope = load_vec<W>(d.output_slope.data() + c);

  const ActivationLayout& sl = d.src_layout;
  const int64_t pixel = sl.pixel, sw = d.stride_w;
  const S* in = src + n * sl.image + channel_offset(sl, c);
  D* out = dst + n * d.dst_layout.image + channel_offset(d.dst_layout, c) + y * d.dst_layout.row;
  const int64_t top = y * d.stride_h - d.pad_t;
  bool inside[3];
  const S* lines[3];
  for (int kh = 0; kh < 3; ++kh) {
    inside[kh] = top + kh >= 0 && top + kh < d.in_h;
    lines[kh] = in + (top + kh) * sl.row;
  }
  const auto tap = [&](const S* p) { return load_vec<W>(p); };
  const auto finish = [&](int64_t x, V acc) {
    if constexpr (OutputPrelu) acc = prelu<W>(acc, out_slope);
    put<W>(out + x * d.dst_layout.pixel, acc, d.inv_scale);
  };
  const auto checked = [&](int64_t x) {
    const int64_t left = x * sw - d.pad_l;
    V acc = bias;
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; ++kh) {
      if (!inside[kh]) continue;
#pragma GCC unroll 3
      for (int kw = 0; kw < 3; ++kw) {
        const int64_t at = left + kw;
        if (at >= 0 && at < d.in_w) acc += tap(lines[kh] + at * pixel) * w[kh * 3 + kw];
      }
    }
    finish(x, acc);
  };
  const auto [first, last] = interior_columns(d.in_w, d.out_w, d.pad_l, sw);
  int64_t x = 0;
  for (; x < first; ++x) checked(x);
  for (; x + 3 <= last; x += 4) {
    V acc[4] = {bias, bias, bias, bias};
    const int64_t left = x * sw - d.pad_l;
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; ++kh) {
      if (!inside[kh]) continue;
      const S* line = lines[kh] + left * pixel;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; ++kw) acc[j] += tap(line + (j * sw + kw) * pixel) * w[kh * 3 + kw];
      }
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) finish(x + j, acc[j]);
  }
  for (; x < d.out_w; ++x) checked(x);
}

// Runs of W channels where a run never straddles a layout block; the rest one channel at a time.
template <int N, typename S, typename D, bool OutputPrelu>
ARCFORGE_INLINE void rows_typed(const DepthwiseLoop& d, const S* src, D* dst, int64_t begin, int64_t end) {
  const auto fits = [&](int w) {
    const auto ok = [&](const ActivationLayout& l) { return l.block % w == 0 || l.block == d.channels; };
    return w > 0 && ok(d.src_layout) && ok(d.dst_layout);
  };
  const int64_t width = fits(N) ? N : fits(8) && N > 8 ? 8 : 1;
  for (int64_t row = begin; row < end; ++row) {
    int64_t c = 0;
    if constexpr (N >= 8) {
      if (width == N) {
        for (; c + N <= d.channels; c += N) channel_run<N, S, D, OutputPrelu>(d, src, dst, row, c);
      } else if (width == 8) {
        for (; c + 8 <= d.channels; c += 8) channel_run<8, S, D, OutputPrelu>(d, src, dst, row, c);
      }
    }
    for (; c < d.channels; ++c) channel_run<1, S, D, OutputPrelu>(d, src, dst, row, c);
  }
}

template <int N, typename S, typename D>
ARCFORGE_INLINE void rows_to(const DepthwiseLoop& d, const S* src, D* dst, int64_t begin, int64_t end) {
  if (!d.output_slope.empty()) return rows_typed<N, S, D, true>(d, src, dst, begin, end);
  rows_typed<N, S, D, false>(d, src, dst, begin, end);
}

template <int N, typename S>
ARCFORGE_INLINE void rows_from(const DepthwiseLoop& d, const S* src, void* dst, int64_t begin, int64_t end) {
  switch (d.destination) {
    case Type::f32: return rows_to<N>(d, src, static_cast<float*>(dst), begin, end);
    case Type::bf16:
      // vcvtneps2bf16 where the CPU has it (denormals flushed, as oneDNN's bf16 kernels do).
      if (N == 16 && cpu::cpu_kernel_active_isa() == cpu::CpuKernelIsa::avx512_bf16) {
        return rows_to<N>(d, src, static_cast<Bf16Native*>(dst), begin, end);
      }
      return rows_to<N>(d, src, static_cast<uint16_t*>(dst), begin, end);
    case Type::u8: return rows_to<N>(d, src, static_cast<uint8_t*>(dst), begin, end);
    case Type::s8: return rows_to<N>(d, src, static_cast<int8_t*>(dst), begin, end);
  }
}

#define ARCFORGE_DEPTHWISE_ROWS(SUFFIX, ATTRIBUTES, N)                                                          \
  ATTRIBUTES void depthwise_rows_##SUFFIX(const DepthwiseLoop& d, const void* src, void* dst, int64_t begin,  \
                                          int64_t end) {                                                      \
    if (d.source == Type::bf16) return rows_from<N>(d, static_cast<const uint16_t*>(src), dst, begin, end);   \
    rows_from<N>(d, static_cast<const float*>(src), dst, begin, end);                                          \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_DEPTHWISE_ROWS)
#undef ARCFORGE_DEPTHWISE_ROWS

}  // namespace

void depthwise_rows(const DepthwiseLoop& d, const void* src, void* dst, int64_t begin, int64_t end) {
  ARCFORGE_ISA_DISPATCH(depthwise_rows, d, src, dst, begin, end)
}

}  // namespace arcforge::runtime::detail
