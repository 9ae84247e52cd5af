// The Winograd products for one thread's block of tiles (winograd.hpp, multiply_points): 36 small
// matrix products whose operands stay in the thread's cache. A register-blocked kernel: kProductRows
// tiles by up to four vectors of output channels accumulate in registers over the input channels,
// one broadcast of a transformed input value and one load of a transformed weight row per
// multiply-add column. Compiled with -ffp-contract=fast (src/runtime/CMakeLists.txt): the
// multiply-adds must be fused to run at the CPU's rate.
#include "arcforge/cpu/lanes.hpp"
#include "winograd.hpp"

namespace arcforge::runtime::detail::winograd {
namespace {

using cpu::lanes::Lanes;
using cpu::lanes::load_lanes;
using cpu::lanes::store_lanes;

// m[R rows][NV * W] = v[R rows][C] u[C][NV * W]; rows of v, u and m are `c`, `k` and `k` apart.
template <int W, int R, int NV>
ARCFORGE_INLINE void product_block(const float* v, const float* u, float* m, int64_t c, int64_t k) {
  using V = typename Lanes<W>::f32;
  V acc[R][NV] = {};
  for (int64_t i = 0; i < c; ++i) {
    V w[NV];
    for (int j = 0; j < NV; ++j) w[j] = load_lanes<W>(u + i * k + j * W);
    for (int r = 0; r < R; ++r) {
      // One broadcast from memory. Written here rather than in a helper returning the vector: such a
      // helper, compiled for the baseline, builds 8-lane vectors lane by lane even once inlined
      // into the AVX2 copy. (V{} + x would add +0 first, which turns -0 into +0; x - (+0) is x.)
      const V x = v[r * c + i] - V{};
      for (int j = 0; j < NV; ++j) acc[r][j] += x * w[j];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < NV; ++j) store_lanes<W>(m + r * k + j * W, acc[r][j]);
  }
}

// NV, the vectors of output channels per block: as many as the registers hold next to R x NV
// accumulators (16-lane vectors exist only at the AVX-512 level, which has 32 registers; 8-lane ones
// get 16, as AVX2 has and AVX-512 without VL gives to 256-bit vectors).
template <int W>
constexpr int kVectors = W == 16 ? 4 : 2;

template <int W>
ARCFORGE_INLINE void multiply_range(const float* v, const float* u, float* m, int64_t rows, int64_t c, int64_t k) {
  constexpr int R = static_cast<int>(kProductRows), NV = kVectors<W>;
  const int64_t vectors = k / W;
  const int64_t full = vectors / NV * NV;
  for (int64_t p = 0; p < kPoints; ++p) {
    const float* vp = v + p * rows * c;
    const float* up = u + p * c * k;
    float* mp = m + p * rows * k;
    // Output-channel blocks outside, so that one block's weight columns stay in L1 over the rows.
    for (int64_t j = 0; j < full; j += NV) {
      for (int64_t r = 0; r < rows; r += R) product_block<W, R, NV>(vp + r * c, up + j * W, mp + r * k + j * W, c, k);
    }
    const int64_t left = vectors - full;
    for (int64_t r = 0; r < rows && left > 0; r += R) {
      const float* ur = up + full * W;
      float* mr = mp + r * k + full * W;
      if (left == 1) product_block<W, R, 1>(vp + r * c, ur, mr, c, k);
      if constexpr (NV > 2) {
        if (left == 2) product_block<W, R, 2>(vp + r * c, ur, mr, c, k);
        if (left == 3) product_block<W, R, 3>(vp + r * c, ur, mr, c, k);
      }
    }
  }
}

#define ARCFORGE_WINOGRAD_PRODUCTS(SUFFIX, ATTRIBUTES, N)                                                         \
  template <int W>                                                                                                \
  ATTRIBUTES void multiply_##SUFFIX(const float* v, const float* u, float* m, int64_t rows, int64_t c, int64_t k) { \
    multiply_range<W>(v, u, m, rows, c, k);                                                                       \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_WINOGRAD_PRODUCTS)
#undef ARCFORGE_WINOGRAD_PRODUCTS

template <int W>
void multiply_for_isa(const float* v, const float* u, float* m, int64_t rows, int64_t c, int64_t k) {
  ARCFORGE_ISA_DISPATCH_TEMPLATE(multiply, W, v, u, m, rows, c, k)
}

}  // namespace

void multiply_points(const float* v, const float* u, float* m, int64_t rows, int64_t in_channels,
                     int64_t out_channels, int64_t layout_block) {
  if (layout_block == 16) return multiply_for_isa<16>(v, u, m, rows, in_channels, out_channels);
  multiply_for_isa<8>(v, u, m, rows, in_channels, out_channels);
}

}  // namespace arcforge::runtime::detail::winograd
