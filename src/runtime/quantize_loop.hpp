#pragma once
// arcforge's own loop for the hot quantizations of an int8 model: fp32 or bf16 values rounded into
// u8/s8, y = saturate(round_half_even(x * inv_scale)), as a oneDNN reorder with an output scale
// computes it (bit for bit; a bf16 x is widened to float first), optionally after a PReLU with a
// slope per channel on a channels-last tensor, in the same pass. oneDNN 2.6's scaling reorder runs
// at about a third of this loop's speed (docs/runtime.md, "The quantizing loop"), and it cannot take
// the PReLU. NaN rounds to the low end (0 for u8, -128 for s8; oneDNN gives 127 for s8).
#include <cstdint>
#include <vector>

#include "plan.hpp"

namespace arcforge::runtime::detail {

struct QuantizeLoop {
  float inv_scale = 1.0f;
  bool is_signed = false;      // s8, else u8
  std::vector<float> slope;    // empty: no PReLU; else one per channel (the innermost dimension)
  bool bf16_source = false;    // x holds bf16 bits (uint16_t), else floats
};

// The loop without a PReLU.
inline QuantizeLoop plain_quantization(float inv_scale, bool is_signed) {
  QuantizeLoop q;
  q.inv_scale = inv_scale;
  q.is_signed = is_signed;
  return q;
}

// Elements [begin, end) of x (float or bf16, as q says) into y (int8_t or uint8_t). With a slope,
// begin and end are multiples of its size (the channels).
void quantize_range(const QuantizeLoop& q, const void* x, void* y, int64_t begin, int64_t end);

// Whether the loop can run from `src` (fp32 or bf16) to `dst` (u8/s8): the two must hold the same
// elements in the same order, and, with a slope, the channels innermost, one slope each. Never
// with ARCFORGE_RUNTIME_QUANTIZE_LOOP=0: oneDNN's scaling reorder, or its binary primitive for a
// PReLU, then quantizes instead.
bool quantize_loop_fits(const md_t& src, const md_t& dst, const QuantizeLoop& q);
// Adds the loop as a plan step: false (nothing added) where it does not fit.
bool add_quantize_loop(PlanBuilder& b, const MemRef& src, const MemRef& dst, QuantizeLoop q);

}  // namespace arcforge::runtime::detail
