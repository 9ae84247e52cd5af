#pragma once
// W channels at a time for the runtime's channel-vectorised loops (the depthwise loop, the stem
// convolution): a vector of W floats, or one plain float (W = 1) for the channels left over, and the
// store of W results as fp32, bf16 or quantized u8/s8; and which output columns of a 3-wide kernel
// need no padding checks. Include only from a kernel's .cpp (arcforge/cpu/lanes.hpp says why).
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "quantize_lanes.hpp"

namespace arcforge::runtime::detail {

template <int W>
struct VecOf {
  using type = typename cpu::lanes::Lanes<W>::f32;
};
template <>
struct VecOf<1> {
  using type = float;
};
template <int W>
using Vec = typename VecOf<W>::type;

// W values to y: W = 1 through the scalar conversions.
template <int W, typename D>
ARCFORGE_INLINE void put(D* y, Vec<W> v, float inv_scale) {
  if constexpr (std::is_same_v<D, float> || std::is_same_v<D, uint16_t> ||
                std::is_same_v<D, cpu::lanes::Bf16Native>) {
    if constexpr (W == 1) {
      cpu::lanes::store(*y, v);
    } else {
      cpu::lanes::store_lanes<W>(y, v);
    }
  } else if constexpr (W == 1) {
    store_quantized(*y, v, inv_scale);
  } else {
    store_quantized<W>(y, v, inv_scale);
  }
}

// The interior output columns [first, last] of a 3-wide kernel: those whose taps all fall inside a
// row of in_w values (left = x * stride - pad_l >= 0 and left + 2 < in_w); last < first when none.
inline std::pair<int64_t, int64_t> interior_columns(int64_t in_w, int64_t out_w, int64_t pad_l, int64_t stride) {
  const int64_t first = std::min(out_w, (pad_l + stride - 1) / stride);
  const int64_t last = in_w - 3 + pad_l < 0 ? -1 : std::min(out_w - 1, (in_w - 3 + pad_l) / stride);
  return {first, last};
}

}  // namespace arcforge::runtime::detail
