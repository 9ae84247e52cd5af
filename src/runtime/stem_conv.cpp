// The stem convolution (stem_conv.hpp): W output channels at a time in GCC's vector extensions, one
// copy per instruction set (arcforge/cpu/lanes.hpp) and per input channel count. For each output
// row and run of W channels the 9 * IC weights stay in registers; each input value is broadcast
// against them. Interior columns run four at a time without checks, the edges one at a time with
// them; taps in the padding are skipped (a zero input contributes nothing).
#include "stem_conv.hpp"

#include <algorithm>

#include "channel_vectors.hpp"

namespace arcforge::runtime::detail {
namespace {

using cpu::lanes::Bf16Native;
using Type = StemConv::Type;

template <int W>
ARCFORGE_INLINE Vec<W> load_vec(const float* p) {
  if constexpr (W == 1) {
    return *p;
  } else {
    return cpu::lanes::load_lanes<W>(p);
  }
}

// Channels [c, c + W) of output row `row`, from IC input planes.
template <int W, int IC, typename D>
ARCFORGE_INLINE void channel_run(const StemConv& s, const float* src, D* dst, int64_t row, int64_t c) {
  using V = Vec<W>;
  constexpr int taps = IC * 9;
  const int64_t n = row / s.out_h, y = row % s.out_h;
  V w[taps];
#pragma GCC unroll 36
  for (int t = 0; t < taps; ++t) w[t] = load_vec<W>(s.weights.data() + t * s.out_channels + c);
  const V bias = load_vec<W>(s.bias.data() + c);
  const V slope = load_vec<W>(s.negative_slope.data() + c);
  const V lower = V{} + s.lower, upper = V{} + s.upper;

  const int64_t plane = s.in_h * s.in_w, sw = s.stride_w;
  const int64_t top = y * s.stride_h - s.pad_t;
  bool inside[3];
  const float* lines[IC][3];
  for (int kh = 0; kh < 3; ++kh) {
    inside[kh] = top + kh >= 0 && top + kh < s.in_h;
    for (int ic = 0; ic < IC; ++ic) lines[ic][kh] = src + (n * IC + ic) * plane + (top + kh) * s.in_w;
  }
  const ActivationLayout& dl = s.dst_layout;
  D* out = dst + n * dl.image + channel_offset(dl, c) + y * dl.row;
  const auto finish = [&](int64_t x, V acc) {
    acc = acc < 0.0f ? acc * slope : acc;
    acc = acc < lower ? lower : acc;
    acc = acc > upper ? upper : acc;
    put<W>(out + x * dl.pixel, acc, 1.0f);
  };
  const auto checked = [&](int64_t x) {
    const int64_t left = x * sw - s.pad_l;
    V acc = bias;
#pragma GCC unroll 4
    for (int ic = 0; ic < IC; ++ic) {
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh) {
        if (!inside[kh]) continue;
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; ++kw) {
          const int64_t at = left + kw;
          if (at >= 0 && at < s.in_w) acc += w[(ic * 3 + kh) * 3 + kw] * lines[ic][kh][at];
        }
      }
    }
    finish(x, acc);
  };
  const auto [first, last] = interior_columns(s.in_w, s.out_w, s.pad_l, sw);
  int64_t x = 0;
  for (; x < first; ++x) checked(x);
  for (; x + 3 <= last; x += 4) {
    V acc[4] = {bias, bias, bias, bias};
    const int64_t left = x * sw - s.pad_l;
#pragma GCC unroll 4
    for (int ic = 0; ic < IC; ++ic) {
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh) {
        if (!inside[kh]) continue;
        const float* line = lines[ic][kh] + left;
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
#pragma GCC unroll 3
          for (int kw = 0; kw < 3; ++kw) acc[j] += w[(ic * 3 + kh) * 3 + kw] * line[j * sw + kw];
        }
      }
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) finish(x + j, acc[j]);
  }
  for (; x < s.out_w; ++x) checked(x);
}

// Runs of 16, then 8 channels (up to N) where a run never straddles a block of the output layout;
// what is left one channel at a time.
template <int N, int IC, typename D>
ARCFORGE_INLINE void rows_typed(const StemConv& s, const float* src, D* dst, int64_t begin, int64_t end) {
  const ActivationLayout& l = s.dst_layout;
  const int64_t channels = s.out_channels;
  const auto fits = [&](int w) { return l.block % w == 0 || l.block == channels; };
  for (int64_t row = begin; row < end; ++row) {
    int64_t c = 0;
    if constexpr (N >= 16) {
      if (fits(16)) {
        for (; c + 16 <= channels; c += 16) channel_run<16, IC, D>(s, src, dst, row, c);
      }
    }
    if constexpr (N >= 8) {
      if (fits(8)) {
        for (; c + 8 <= channels; c += 8) channel_run<8, IC, D>(s, src, dst, row, c);
      }
    }
    for (; c < channels; ++c) channel_run<1, IC, D>(s, src, dst, row, c);
  }
}

template <int N, int IC>
ARCFORGE_INLINE void rows_to(const StemConv& s, const float* src, void* dst, int64_t begin, int64_t end) {
  if (s.destination == Type::f32) return rows_typed<N, IC>(s, src, static_cast<float*>(dst), begin, end);
  // vcvtneps2bf16 where the CPU has it (denormals flushed, as oneDNN's bf16 kernels do).
  if (N == 16 && cpu::cpu_kernel_active_isa() == cpu::CpuKernelIsa::avx512_bf16) {
    return rows_typed<N, IC>(s, src, static_cast<Bf16Native*>(dst), begin, end);
  }
  rows_typed<N, IC>(s, src, static_cast<uint16_t*>(dst), begin, end);
}

#define ARCFORGE_STEM_ROWS(SUFFIX, ATTRIBUTES, N)                                                          \
  ATTRIBUTES void stem_rows_##SUFFIX(const StemConv& s, const float* src, void* dst, int64_t begin,       \
                                     int64_t end) {                                                       \
    if (s.in_channels == 1) return rows_to<N, 1>(s, src, dst, begin, end);                                \
    rows_to<N, 3>(s, src, dst, begin, end);                                                               \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_STEM_ROWS)
#undef ARCFORGE_STEM_ROWS

}  // namespace

bool stem_conv_takes_input_channels(int64_t channels) { return channels == 1 || channels == 3; }

void stem_conv_rows(const StemConv& s, const float* src, void* dst, int64_t begin, int64_t end) {
  ARCFORGE_ISA_DISPATCH(stem_rows, s, src, dst, begin, end)
}

}  // namespace arcforge::runtime::detail
