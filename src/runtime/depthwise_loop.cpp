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

// Lanes 2k and 2k + 1 swapped: each channel's partner in a group of two.
template <int W>
ARCFORGE_INLINE Vec<W> swap_pairs(Vec<W> v) {
  using I = typename Lanes<W>::i32;
  if constexpr (W == 8) {
    return __builtin_shuffle(v, I{1, 0, 3, 2, 5, 4, 7, 6});
  } else {
    return __builtin_shuffle(v, I{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
  }
}

template <int W>
ARCFORGE_INLINE Vec<W> prelu(Vec<W> v, Vec<W> slope) {
  return v < 0.0f ? v * slope : v;
}

// Channels [c, c + W) of output row `row`. The columns whose taps all fall inside the image run
// four at a time, branch-free within each kernel row (four independent sums, and with stride 1 the
// six input pixels they share loaded once); the columns at the edges one at a time, with checks.
template <int W, typename S, typename D, bool OutputPrelu, bool Pairs>
ARCFORGE_INLINE void channel_run(const DepthwiseLoop& d, const S* src, D* dst, int64_t row, int64_t c) {
  using V = Vec<W>;
  const int64_t n = row / d.out_h, y = row % d.out_h;
  V w[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) w[t] = load_vec<W>(d.weights.data() + t * d.channels + c);
  V wp[Pairs ? 9 : 1];
  if constexpr (Pairs) {
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) wp[t] = load_vec<W>(d.partner_weights.data() + t * d.channels + c);
  }
  const int64_t partner = c % 2 == 0 ? 1 : -1;  // where channel c's partner lies (W = 1)
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
  // acc += tap k at p: the channel's own input, and with Pairs its partner's.
  const auto mac = [&](V& acc, const S* p, int k) {
    const V v = load_vec<W>(p);
    acc += v * w[k];
    if constexpr (Pairs && W == 1) {
      acc += load_vec<1>(p + partner) * wp[k];
    } else if constexpr (Pairs) {
      acc += swap_pairs<W>(v) * wp[k];
    }
  };
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
        if (at >= 0 && at < d.in_w) mac(acc, lines[kh] + at * pixel, kh * 3 + kw);
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
        for (int kw = 0; kw < 3; ++kw) mac(acc[j], line + (j * sw + kw) * pixel, kh * 3 + kw);
      }
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) finish(x + j, acc[j]);
  }
  for (; x < d.out_w; ++x) checked(x);
}

// Runs of W channels where a run never straddles a layout block; the rest one channel at a time.
template <int N, typename S, typename D, bool OutputPrelu, bool Pairs>
ARCFORGE_INLINE void rows_typed(const DepthwiseLoop& d, const S* src, D* dst, int64_t begin, int64_t end) {
  const auto fits = [&](int w) {
    const auto ok = [&](const ActivationLayout& l) { return l.block % w == 0 || l.block == d.channels; };
    return w > 0 && ok(d.src_layout) && ok(d.dst_layout);
  };
  // Where N fits, 8 does too: runs of N, then of 8 for what is left (SCRFD's 40, 72 and 152 channels
  // channels-last: 16 + 16 + 8), then one at a time.
  const bool wide = N > 8 && fits(N), eight = N >= 8 && fits(8);
  for (int64_t row = begin; row < end; ++row) {
    int64_t c = 0;
    if constexpr (N >= 8) {
      if (wide) {
        for (; c + N <= d.channels; c += N) channel_run<N, S, D, OutputPrelu, Pairs>(d, src, dst, row, c);
      }
      if (eight) {
        for (; c + 8 <= d.channels; c += 8) channel_run<8, S, D, OutputPrelu, Pairs>(d, src, dst, row, c);
      }
    }
    for (; c < d.channels; ++c) channel_run<1, S, D, OutputPrelu, Pairs>(d, src, dst, row, c);
  }
}

template <int N, typename S, typename D>
ARCFORGE_INLINE void rows_to(const DepthwiseLoop& d, const S* src, D* dst, int64_t begin, int64_t end) {
  const bool prelu = !d.output_slope.empty();
  if (d.pairs) {
    if (prelu) return rows_typed<N, S, D, true, true>(d, src, dst, begin, end);
    return rows_typed<N, S, D, false, true>(d, src, dst, begin, end);
  }
  if (prelu) return rows_typed<N, S, D, true, false>(d, src, dst, begin, end);
  rows_typed<N, S, D, false, false>(d, src, dst, begin, end);
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
