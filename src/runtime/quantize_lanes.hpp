#pragma once
// The rounding of the quantizing loop (quantize_loop.hpp), N lanes or one value at a time, for the
// kernels that end in a quantization (the quantizing loop, the depthwise loop): y =
// saturate(round_half_even(x * inv_scale)), as oneDNN's scaling reorder computes it. Clamping
// before rounding gives the same integer as rounding before saturating, since the bounds are
// integers; adding and subtracting 1.5 * 2^23 rounds half to even in the default rounding mode.
// NaN goes to the low end. Include only from a kernel's .cpp (arcforge/cpu/lanes.hpp says why).
#include <cmath>
#include <cstring>
#include <type_traits>

#include "arcforge/cpu/lanes.hpp"

namespace arcforge::runtime::detail {

template <typename T>
constexpr float quantized_low_end = std::is_signed_v<T> ? -128.0f : 0.0f;
template <typename T>
constexpr float quantized_high_end = std::is_signed_v<T> ? 127.0f : 255.0f;

// N values (N > 0) into y[0..N).
template <int N, typename T>
ARCFORGE_INLINE void store_quantized(T* y, typename cpu::lanes::Lanes<N>::f32 v, float inv_scale) {
  using L = cpu::lanes::Lanes<N>;
  using F = typename L::f32;
  typedef T Bytes __attribute__((vector_size(N)));
  const F magic = F{} + 12582912.0f;  // 1.5 * 2^23
  v = v * inv_scale;
  v = v > quantized_low_end<T> ? v : F{} + quantized_low_end<T>;  // NaN too
  v = v < quantized_high_end<T> ? v : F{} + quantized_high_end<T>;
  v = (v + magic) - magic;
  const Bytes out = __builtin_convertvector(__builtin_convertvector(v, typename L::i32), Bytes);
  std::memcpy(y, &out, sizeof out);
}

// One value.
template <typename T>
ARCFORGE_INLINE void store_quantized(T& y, float v, float inv_scale) {
  v *= inv_scale;
  v = v > quantized_low_end<T> ? v : quantized_low_end<T>;
  v = v < quantized_high_end<T> ? v : quantized_high_end<T>;
  y = static_cast<T>(std::nearbyint(v));
}

}  // namespace arcforge::runtime::detail
