// The quantizing loop (quantize_loop.hpp): N float lanes at a time in GCC's vector extensions (a
// bf16 source widened to float as it is loaded), one copy per instruction set
// (arcforge/cpu/lanes.hpp); the rounding itself is quantize_lanes.hpp's.
#include "quantize_loop.hpp"

#include <omp.h>

#include "env_switch.hpp"
#include "quantize_lanes.hpp"

namespace arcforge::runtime::detail {
namespace {

using cpu::lanes::Lanes;
using cpu::lanes::load_lanes;
using dt = dnnl::memory::data_type;

// count values of x (float, or bf16 bits) into y; with a slope, slope[k] applies to x[k] when it
// is negative.
template <int N, typename S, typename T, bool WithSlope>
ARCFORGE_INLINE void quantize_block(const S* x, T* y, int64_t count, float inv_scale, const float* slope) {
  int64_t k = 0;
  if constexpr (N > 0) {
    for (; k + N <= count; k += N) {
      typename Lanes<N>::f32 v = load_lanes<N>(x + k);
      if constexpr (WithSlope) v = v < 0.0f ? v * load_lanes<N>(slope + k) : v;
      store_quantized<N>(y + k, v, inv_scale);
    }
  }
  for (; k < count; ++k) {
    float v = cpu::lanes::load(x[k]);
    if constexpr (WithSlope) v = v < 0.0f ? v * slope[k] : v;
    store_quantized(y[k], v, inv_scale);
  }
}

template <int N, typename S, typename T>
ARCFORGE_INLINE void quantize_typed(const QuantizeLoop& q, const S* x, T* y, int64_t begin, int64_t end) {
  if (q.slope.empty()) return quantize_block<N, S, T, false>(x + begin, y + begin, end - begin, q.inv_scale, nullptr);
  const int64_t channels = static_cast<int64_t>(q.slope.size());
  for (int64_t at = begin; at < end; at += channels) {
    quantize_block<N, S, T, true>(x + at, y + at, channels, q.inv_scale, q.slope.data());
  }
}

template <int N, typename S>
ARCFORGE_INLINE void quantize_from(const QuantizeLoop& q, const S* x, void* y, int64_t begin, int64_t end) {
  if (q.is_signed) return quantize_typed<N>(q, x, static_cast<int8_t*>(y), begin, end);
  quantize_typed<N>(q, x, static_cast<uint8_t*>(y), begin, end);
}

#define ARCFORGE_QUANTIZE_RANGES(SUFFIX, ATTRIBUTES, N)                                                   \
  ATTRIBUTES void quantize_range_##SUFFIX(const QuantizeLoop& q, const void* x, void* y, int64_t begin,  \
                                          int64_t end) {                                                 \
    if (q.bf16_source) return quantize_from<N>(q, static_cast<const uint16_t*>(x), y, begin, end);      \
    quantize_from<N>(q, static_cast<const float*>(x), y, begin, end);                                    \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_QUANTIZE_RANGES)
#undef ARCFORGE_QUANTIZE_RANGES

// The channels-last layout of these dims, as oneDNN names it (rank 2 to 5).
bool channels_last(const md_t& md) {
  using tag = dnnl::memory::format_tag;
  const Dims dims = md.dims();
  static const tag tags[] = {tag::ab, tag::acb, tag::acdb, tag::acdeb};
  if (dims.size() < 2 || dims.size() > 5) return false;
  return md == md_t(dims, md.data_type(), tags[dims.size() - 2]);
}

}  // namespace

void quantize_range(const QuantizeLoop& q, const void* x, void* y, int64_t begin, int64_t end) {
  ARCFORGE_ISA_DISPATCH(quantize_range, q, x, y, begin, end)
}

bool quantize_loop_fits(const md_t& src, const md_t& dst, const QuantizeLoop& q) {
  if (turned_off_by_env("ARCFORGE_RUNTIME_QUANTIZE_LOOP")) return false;
  const dt quant_t = q.is_signed ? dt::s8 : dt::u8;
  const std::size_t source_bytes = src.data_type() == dt::f32 ? 4 : src.data_type() == dt::bf16 ? 2 : 0;
  if (source_bytes == 0 || dst != with_type(src, quant_t)) return false;
  if (dst.get_size() * source_bytes != src.get_size()) return false;  // one byte each, padding included
  return q.slope.empty() || (channels_last(src) && src.dims()[1] == static_cast<int64_t>(q.slope.size()));
}

bool add_quantize_loop(PlanBuilder& b, const MemRef& src, const MemRef& dst, QuantizeLoop q) {
  if (!quantize_loop_fits(src.md, dst.md, q)) return false;
  q.bf16_source = src.md.data_type() == dt::bf16;
  const int64_t count = static_cast<int64_t>(dst.md.get_size());
  if (count == 0) return true;
  // Whole channel rows with a slope; else runs of 64 (a cache line of output).
  const int64_t unit = q.slope.empty() ? 64 : static_cast<int64_t>(q.slope.size());
  b.add_custom({src, dst}, [q, count, unit](const std::vector<char*>& p) {
    const char* x = p[0];
    const int64_t units = (count + unit - 1) / unit;
#pragma omp parallel
    {
      const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t begin = std::min(count, units * t / threads * unit);
      const int64_t end = std::min(count, units * (t + 1) / threads * unit);
      if (begin < end) quantize_range(q, x, p[1], begin, end);
    }
  }, "loop:quantize");
  return true;
}

}  // namespace arcforge::runtime::detail
