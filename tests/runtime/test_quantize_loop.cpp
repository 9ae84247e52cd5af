// arcforge's quantizing loop (src/runtime/quantize_loop.hpp) at every instruction-set level this CPU
// runs, against a per-element reference (the fp32 products a oneDNN reorder with an output scale
// forms from float or bf16 values, then round half to even and saturation in double) and, without
// a slope, against that oneDNN reorder itself, bit for bit (NaN aside).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <dnnl.hpp>

#include "arcforge/cpu/lanes.hpp"
#include "forced_isa.hpp"
#include "quantize_loop.hpp"

namespace arcforge::test {
namespace {

using runtime::detail::QuantizeLoop;

// Values that hit every case: ties of the rounding at scale 0.5 (odd integers), the saturation on
// both sides, zero of both signs, infinities, NaN and random values.
std::vector<float> awkward_values(std::size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> wide(-600.0f, 600.0f);
  const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 3.0f, -3.0f, 5.0f, -5.0f, 253.0f, 254.0f, 255.0f, -255.0f,
                            -257.0f, 509.0f, 511.0f, 1e9f, -1e9f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
  std::vector<float> v(count);
  for (std::size_t k = 0; k < count; ++k) {
    const std::size_t pick = rng() % 4;
    v[k] = pick == 0 ? specials[rng() % std::size(specials)] : pick == 1 ? std::round(wide(rng)) : wide(rng);
  }
  return v;
}

int expected(float x, float slope, const QuantizeLoop& q) {
  const float activated = x < 0.0f ? x * slope : x;  // fp32, as the loop and oneDNN compute it
  const double v = static_cast<double>(activated * q.inv_scale);
  const double lo = q.is_signed ? -128.0 : 0.0, hi = q.is_signed ? 127.0 : 255.0;
  if (std::isnan(v)) return static_cast<int>(lo);
  return static_cast<int>(std::nearbyint(std::min(hi, std::max(lo, v))));
}

// bf16 bits of each value, rounded to nearest even (NaN kept a NaN), and those bits widened back.
std::vector<uint16_t> to_bf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (std::size_t k = 0; k < x.size(); ++k) cpu::lanes::store(out[k], x[k]);
  return out;
}
std::vector<float> widened(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (std::size_t k = 0; k < bits.size(); ++k) out[k] = cpu::lanes::load(bits[k]);
  return out;
}

// The loop over x, or over x's bf16 bits with q.bf16_source.
std::vector<int> run_loop(const QuantizeLoop& q, const std::vector<float>& x, int64_t begin, int64_t end) {
  std::vector<int8_t> y(x.size(), 99);
  const std::vector<uint16_t> bits = to_bf16(x);
  const void* source = q.bf16_source ? static_cast<const void*>(bits.data()) : static_cast<const void*>(x.data());
  runtime::detail::quantize_range(q, source, y.data(), begin, end);
  std::vector<int> out(x.size());
  for (std::size_t k = 0; k < x.size(); ++k) out[k] = q.is_signed ? y[k] : static_cast<uint8_t>(y[k]);
  return out;
}

TEST(QuantizeLoop, MatchesTheReferenceAtEveryIsa) {
  for (const auto isa : runnable_isas()) {
    ForcedIsa forced(isa);
    for (const bool is_signed : {false, true}) {
      for (const float inv_scale : {0.5f, 1.0f, 12.547647f, 0.0371f}) {
        for (const bool bf16 : {false, true}) {
          SCOPED_TRACE(std::string(isa_name(isa)) + (is_signed ? " s8" : " u8") + (bf16 ? " from bf16" : "") +
                       " inv_scale " + std::to_string(inv_scale));
          const QuantizeLoop q{inv_scale, is_signed, {}, bf16};
          // Ranges that start and end inside vectors: the loop's tails.
          std::vector<float> x = awkward_values(301, 11 + static_cast<uint32_t>(inv_scale * 100));
          if (bf16) x = widened(to_bf16(x));  // what the loop reads
          for (const auto& [begin, end] : {std::pair<int64_t, int64_t>{0, 301}, {3, 290}, {17, 18}, {0, 15}}) {
            const std::vector<int> y = run_loop(q, x, begin, end);
            for (int64_t k = 0; k < 301; ++k) {
              const int want = k >= begin && k < end ? expected(x[k], 1.0f, q) : 99;
              ASSERT_EQ(y[k], want) << "element " << k << " = " << x[k] << " of [" << begin << ", " << end << ")";
            }
          }
        }
      }
    }
  }
}

TEST(QuantizeLoop, PReLUPerChannelAtEveryIsa) {
  for (const auto isa : runnable_isas()) {
    ForcedIsa forced(isa);
    for (const int64_t channels : {3, 16, 24, 40}) {
      for (const bool is_signed : {false, true}) {
        const bool bf16 = is_signed;  // both sources, each with one output type
        SCOPED_TRACE(std::string(isa_name(isa)) + " channels " + std::to_string(channels) +
                     (is_signed ? " s8 from bf16" : " u8"));
        std::vector<float> slope(static_cast<std::size_t>(channels));
        // Some negative, some above 1.
        for (int64_t c = 0; c < channels; ++c) slope[c] = -0.6f + 0.2f * static_cast<float>(c % 10);
        const QuantizeLoop q{0.37f, is_signed, slope, bf16};
        const int64_t pixels = 7;
        std::vector<float> x = awkward_values(static_cast<std::size_t>(pixels * channels), 29);
        if (bf16) x = widened(to_bf16(x));
        const std::vector<int> y = run_loop(q, x, channels, 6 * channels);  // pixels 1 to 5
        for (int64_t k = 0; k < pixels * channels; ++k) {
          const bool inside = k >= channels && k < 6 * channels;
          ASSERT_EQ(y[k], inside ? expected(x[k], slope[k % channels], q) : 99) << "element " << k << " = " << x[k];
        }
      }
    }
  }
}

TEST(QuantizeLoop, BitIdenticalToOneDnnScalingReorder) {
  using dt = dnnl::memory::data_type;
  const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  const int64_t count = 4099;
  std::vector<float> x = awkward_values(static_cast<std::size_t>(count), 41);
  // NaN aside: oneDNN 2.6 rounds it to 127 in s8 and 0 in u8, the loop to the low end of both.
  for (float& v : x) v = std::isnan(v) ? 7.0f : v;
  for (const bool is_signed : {false, true}) {
    for (const float inv_scale : {0.5f, 12.547647f, 0.0371f}) {
      SCOPED_TRACE(std::string(is_signed ? "s8" : "u8") + " inv_scale " + std::to_string(inv_scale));
      const dnnl::memory::desc src({count}, dt::f32, dnnl::memory::format_tag::a);
      const dnnl::memory::desc dst({count}, is_signed ? dt::s8 : dt::u8, dnnl::memory::format_tag::a);
      std::vector<int8_t> by_onednn(static_cast<std::size_t>(count));
      dnnl::memory from(src, eng, x.data()), to(dst, eng, by_onednn.data());
      dnnl::primitive_attr attr;
      attr.set_output_scales(0, {inv_scale});
      dnnl::reorder(dnnl::reorder::primitive_desc(eng, src, eng, dst, attr)).execute(stream, from, to);
      stream.wait();
      const std::vector<int> ours = run_loop({inv_scale, is_signed, {}, false}, x, 0, count);
      for (int64_t k = 0; k < count; ++k) {
        const int theirs = is_signed ? by_onednn[k] : static_cast<uint8_t>(by_onednn[k]);
        ASSERT_EQ(ours[k], theirs) << "element " << k << " = " << x[k];
      }
    }
  }
}

}  // namespace
}  // namespace arcforge::test
