#pragma once
// The activation layouts the runtime's own loops read and write (src/runtime/activation_layout.hpp),
// written out from the formats' definitions for the loops' tests: channels-last (block 0) or
// nChwXc (block X).
#include <cstdint>

#include "activation_layout.hpp"

namespace arcforge::test {

// Where element (n, c, y, x) of an [N, C, H, W] tensor lies.
inline int64_t offset_in(int block, int64_t n, int64_t c, int64_t y, int64_t x, int64_t C, int64_t H, int64_t W) {
  if (block == 0) return ((n * H + y) * W + x) * C + c;
  return (((n * (C / block) + c / block) * H + y) * W + x) * block + c % block;
}

inline runtime::detail::ActivationLayout layout_for(int block, int64_t C, int64_t H, int64_t W) {
  if (block == 0) return {C, 0, H * W * C, W * C, C};
  return {block, H * W * block, C * H * W, W * block, block};
}

}  // namespace arcforge::test
