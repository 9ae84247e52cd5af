// arcforge's depthwise loop (src/runtime/depthwise_loop.hpp) at every instruction-set level this CPU
// runs, against a double-precision depthwise convolution (reference_ops.hpp) with the PReLU and the
// quantization applied in double: every layout, source and destination type, strides 1 and 2,
// symmetric, asymmetric and wide padding, channel counts that leave tails. Then the loop in a
// model: planned for a depthwise conv with its PReLU, and oneDNN's kernel where it is turned off.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "arcforge/cpu/lanes.hpp"
#include "arcforge/runtime/model.hpp"
#include "depthwise_loop.hpp"
#include "forced_isa.hpp"
#include "loop_layouts_for_tests.hpp"
#include "onnx_builder.hpp"
#include "parity_util.hpp"
#include "reference_ops.hpp"

namespace arcforge::test {
namespace {

using runtime::detail::DepthwiseLoop;
using Type = DepthwiseLoop::Type;

struct Shape {
  int64_t channels, h, w, stride, pad_t, pad_l, pad_b, pad_r;
};

std::size_t size_of(Type t) { return t == Type::f32 ? 4 : t == Type::bf16 ? 2 : 1; }

double read_back(const std::vector<uint8_t>& bytes, Type t, int64_t k) {
  switch (t) {
    case Type::f32: {
      float v;
      std::memcpy(&v, bytes.data() + 4 * k, 4);
      return v;
    }
    case Type::bf16: {
      uint16_t v;
      std::memcpy(&v, bytes.data() + 2 * k, 2);
      return cpu::lanes::load(v);
    }
    case Type::u8: return bytes[k];
    case Type::s8: return static_cast<int8_t>(bytes[k]);
  }
  return 0;
}

const char* name_of(Type t) {
  switch (t) {
    case Type::f32: return "f32";
    case Type::bf16: return "bf16";
    case Type::u8: return "u8";
    case Type::s8: return "s8";
  }
  return "?";
}

constexpr int64_t kBatch = 2;
constexpr uint8_t kSentinel = 0x5A;

// The reference of one case in NCHW: the convolution and PReLU in double, with the bound on the
// rounding of an fp32 evaluation (the sum of the magnitudes of its terms) beside each value.
struct Expected {
  int64_t out_h = 0, out_w = 0;
  ref::Vec value, magnitude;
};

Expected reference(const Shape& s, const ref::Vec& x, const std::vector<float>& w, const std::vector<float>& bias,
                   const std::vector<float>& slope, bool pairs) {
  Expected e;
  const auto conv = [&](const ref::Vec& in, const ref::Vec& wt, const ref::Vec& b) {
    return ref::conv2d(in, kBatch, s.channels, s.h, s.w, wt, s.channels, 3, 3, b, s.stride, s.pad_t, s.pad_l,
                       s.pad_b, s.pad_r, pairs ? s.channels / 2 : s.channels, 1, e.out_h, e.out_w);
  };
  e.value = conv(x, ref::to_double(w), ref::to_double(bias));
  ref::Vec abs_x(x), abs_w = ref::to_double(w), abs_b = ref::to_double(bias);
  for (double& v : abs_x) v = std::fabs(v);
  for (double& v : abs_w) v = std::fabs(v);
  for (double& v : abs_b) v = std::fabs(v);
  e.magnitude = conv(abs_x, abs_w, abs_b);
  const int64_t plane = e.out_h * e.out_w;
  for (std::size_t k = 0; k < e.value.size(); ++k) {
    const int64_t c = static_cast<int64_t>(k) / plane % s.channels;
    if (!slope.empty() && e.value[k] < 0) e.value[k] *= slope[c];
    if (!slope.empty()) e.magnitude[k] *= std::max(1.0, std::fabs(static_cast<double>(slope[c])));
  }
  return e;
}

// How far the loop's output may be from the double reference: fp32 accumulation, then the
// destination's rounding (bf16: 8 significant bits; u8/s8: the value scaled, within one step of
// the rounding of the exact value).
double tolerance(Type dst, double want, double magnitude, float inv_scale) {
  const double accumulation = 4e-7 * 10 * magnitude;
  if (dst == Type::f32) return accumulation;
  if (dst == Type::bf16) return accumulation + std::fabs(want) * std::ldexp(1.0, -8);
  return 1.0 + accumulation * inv_scale;
}

double destination_of(Type dst, double value, float inv_scale) {
  if (dst == Type::f32 || dst == Type::bf16) return value;
  const double lo = dst == Type::s8 ? -128 : 0, hi = dst == Type::s8 ? 127 : 255;
  return std::nearbyint(std::clamp(value * inv_scale, lo, hi));
}

// `pairs`: two channels per group (weights [C, 2, 3, 3]), else one.
void check_case(const Shape& s, int block, Type src, Type dst, bool with_prelu, bool pairs) {
  const uint32_t seed = static_cast<uint32_t>(s.channels * 131 + s.h * 17 + s.w + s.stride * 7 + s.pad_t);
  std::vector<float> x = random_values(static_cast<std::size_t>(kBatch * s.channels * s.h * s.w), seed, -2.0f, 2.0f);
  for (std::size_t k = 0; k < x.size(); k += 11) x[k] = 0.0f;
  if (src == Type::bf16) {
    for (float& v : x) {
      uint16_t bits;
      cpu::lanes::store(bits, v);
      v = cpu::lanes::load(bits);  // the values the loop reads
    }
  }
  DepthwiseLoop d;
  const int64_t per_group = pairs ? 2 : 1;
  const std::vector<float> w =
      random_values(static_cast<std::size_t>(s.channels * 9 * per_group), seed + 1, -0.6f, 0.6f);
  d.bias = random_values(static_cast<std::size_t>(s.channels), seed + 2);
  std::vector<float> slope;
  if (with_prelu) {
    // Negative, zero, fractional and above one.
    for (int64_t c = 0; c < s.channels; ++c) slope.push_back(-0.5f + 0.25f * static_cast<float>(c % 9));
  }
  const Expected e = reference(s, ref::to_double(x), w, d.bias, slope, pairs);

  d.channels = s.channels;
  d.in_h = s.h;
  d.in_w = s.w;
  d.out_h = e.out_h;
  d.out_w = e.out_w;
  d.stride_h = d.stride_w = s.stride;
  d.pad_t = s.pad_t;
  d.pad_l = s.pad_l;
  // Input j of output channel c's group is channel c - c % 2 + j: its own is j = c % 2.
  d.pairs = pairs;
  d.weights.resize(static_cast<std::size_t>(s.channels * 9));
  if (pairs) d.partner_weights.resize(d.weights.size());
  for (int64_t c = 0; c < s.channels; ++c) {
    const int64_t own = pairs ? c % 2 : 0;
    for (int64_t t = 0; t < 9; ++t) {
      d.weights[t * s.channels + c] = w[(c * per_group + own) * 9 + t];
      if (pairs) d.partner_weights[t * s.channels + c] = w[(c * per_group + 1 - own) * 9 + t];
    }
  }
  d.output_slope = slope;
  d.source = src;
  d.destination = dst;
  d.inv_scale = 37.5f;
  d.src_layout = layout_for(block, s.channels, s.h, s.w);
  d.dst_layout = layout_for(block, s.channels, e.out_h, e.out_w);

  std::vector<float> src_f32(x.size());
  std::vector<uint16_t> src_bf16(x.size());
  for (int64_t n = 0; n < kBatch; ++n)
    for (int64_t c = 0; c < s.channels; ++c)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t i = 0; i < s.w; ++i) {
          const int64_t to = offset_in(block, n, c, y, i, s.channels, s.h, s.w);
          const float v = x[((n * s.channels + c) * s.h + y) * s.w + i];
          src_f32[to] = v;
          cpu::lanes::store(src_bf16[to], v);
        }
  const void* source = src == Type::bf16 ? static_cast<const void*>(src_bf16.data()) : src_f32.data();
  const int64_t rows = kBatch * e.out_h, count = kBatch * s.channels * e.out_h * e.out_w;
  std::vector<uint8_t> out(static_cast<std::size_t>(count) * size_of(dst), kSentinel);

  // The inner rows first: the first and last rows must stay untouched.
  runtime::detail::depthwise_rows(d, source, out.data(), 1, rows - 1);
  const auto out_offset = [&](int64_t n, int64_t c, int64_t y, int64_t i) {
    return offset_in(block, n, c, y, i, s.channels, e.out_h, e.out_w);
  };
  for (const int64_t row : {int64_t{0}, rows - 1}) {
    if (rows < 2) break;
    const int64_t k = out_offset(row / e.out_h, 0, row % e.out_h, 0) * static_cast<int64_t>(size_of(dst));
    ASSERT_EQ(out[k], kSentinel) << "row " << row << " written by a range that excludes it";
  }
  runtime::detail::depthwise_rows(d, source, out.data(), 0, std::min<int64_t>(1, rows));
  if (rows > 1) runtime::detail::depthwise_rows(d, source, out.data(), rows - 1, rows);

  for (int64_t n = 0; n < kBatch; ++n)
    for (int64_t c = 0; c < s.channels; ++c)
      for (int64_t y = 0; y < e.out_h; ++y)
        for (int64_t i = 0; i < e.out_w; ++i) {
          const int64_t k = ((n * s.channels + c) * e.out_h + y) * e.out_w + i;
          const double want = destination_of(dst, e.value[k], d.inv_scale);
          const double got = read_back(out, dst, out_offset(n, c, y, i));
          ASSERT_LE(std::fabs(got - want), tolerance(dst, e.value[k], e.magnitude[k], d.inv_scale))
              << "image " << n << " channel " << c << " at (" << y << ", " << i << "): " << got << " vs " << want;
        }
}

TEST(DepthwiseLoop, MatchesTheDoubleReferenceAtEveryIsa) {
  const std::vector<Shape> shapes = {
      {24, 7, 9, 1, 1, 1, 1, 1},    // MobileFaceNet's stride-1 layer, small
      {48, 14, 14, 2, 1, 1, 1, 1},  // its stride-2 downsampling
      {16, 1, 1, 1, 1, 1, 1, 1},    // one pixel: every tap but the centre in the padding
      {40, 5, 12, 2, 0, 0, 0, 0},   // no padding
      {3, 6, 5, 1, 1, 0, 0, 1},     // asymmetric padding, fewer channels than any vector
      {32, 3, 19, 1, 1, 1, 1, 1},   // a long row: blocks of four columns and a remainder
      {16, 4, 4, 1, 2, 2, 2, 2},    // padding wider than the kernel: whole columns of zeros
      {21, 2, 2, 1, 1, 1, 1, 1},    // 16 + 5 channels: a vector and a tail
      {26, 3, 6, 1, 1, 1, 1, 1},    // 16 + 8 + 2 channels: a vector, a half vector and a tail
  };
  int cases = 0;
  for (const auto isa : runnable_isas()) {
    ForcedIsa forced(isa);
    for (const Shape& s : shapes) {
      for (const int block : {0, 8, 16}) {
        if (block != 0 && s.channels % block != 0) continue;
        for (const Type src : {Type::f32, Type::bf16}) {
          for (const Type dst : {Type::f32, Type::bf16, Type::u8, Type::s8}) {
            for (const int cases_of_prelu_and_pairs : {0, 1, 2, 3}) {
              const bool prelu = cases_of_prelu_and_pairs % 2 == 1, pairs = cases_of_prelu_and_pairs >= 2;
              if (pairs && s.channels % 2 != 0) continue;
              SCOPED_TRACE(std::string(isa_name(isa)) + " " + std::to_string(s.channels) + "x" + std::to_string(s.h) +
                           "x" + std::to_string(s.w) + " stride " + std::to_string(s.stride) + " pad_t " +
                           std::to_string(s.pad_t) + (block ? " nChw" + std::to_string(block) + "c" : " channels-last") +
                           " " + name_of(src) + " -> " + name_of(dst) + (prelu ? " with PReLU" : "") +
                           (pairs ? ", two channels per group" : ""));
              check_case(s, block, src, dst, prelu, pairs);
              if (HasFatalFailure()) return;
              ++cases;
            }
          }
        }
      }
    }
  }
  std::printf("[depthwise loop] %d cases against the double reference\n", cases);
}

// A MobileFaceNet depthwise stage: 1x1 expand -> PReLU -> dw 3x3 (stride 1 or 2) -> `activation`
// (PRelu, Relu or LeakyRelu: SCRFD's depthwise convs have ReLU); with `per_group` 2, the dw conv in
// groups of two channels, as InsightFace's MobileFaceNet at scale 2.
std::string depthwise_net(const TempDir& dir, int64_t C, int64_t stride, int64_t per_group,
                          const std::string& activation = "PRelu") {
  OnnxBuilder m(13);
  m.input("x", {-1, C, 10, 10}).output("y");
  m.initializer("we", {C, C, 1, 1}, random_values(C * C, 501, -0.4f, 0.4f)).initializer("s1", {C, 1, 1},
                                                                                        random_values(C, 502, 0, 0.4f));
  m.initializer("wd", {C, per_group, 3, 3}, random_values(C * 9 * per_group, 503, -0.5f, 0.5f));
  m.initializer("bd", {C}, random_values(C, 504));
  m.initializer("s2", {C, 1, 1}, random_values(C, 505, -0.2f, 1.2f));
  m.node("Conv", {"x", "we"}, {"e"}, "expand");
  m.node("PRelu", {"e", "s1"}, {"pe"}, "prelu_e");
  auto& dw = m.node("Conv", {"pe", "wd", "bd"}, {"d"}, "dw");
  OnnxBuilder::attr(dw, "pads", std::vector<int64_t>{1, 1, 1, 1});
  OnnxBuilder::attr(dw, "strides", std::vector<int64_t>{stride, stride});
  OnnxBuilder::attr(dw, "group", int64_t{C / per_group});
  if (activation == "PRelu") {
    m.node("PRelu", {"d", "s2"}, {"y"}, "act_d");
  } else {
    auto& act = m.node(activation, {"d"}, {"y"}, "act_d");
    if (activation == "LeakyRelu") OnnxBuilder::attr(act, "alpha", 0.15f);
  }
  return m.save(dir.file("dw" + std::to_string(C) + "_" + std::to_string(stride) + "_" + std::to_string(per_group) +
                         activation + ".onnx"));
}

// The conv and its activation run as one step, on the loop, except ReLU and leaky ReLU on bf16 data,
// which oneDNN's kernel fuses and runs faster; either way the result matches oneDNN's alone.
TEST(DepthwiseLoop, RunsTheModelsDepthwiseConvWithItsActivation) {
  TempDir dir;
  std::vector<runtime::Precision> precisions = {runtime::Precision::fp32};
  if (runtime::cpu_runs_bf16()) precisions.push_back(runtime::Precision::bf16);
  for (const std::string activation : {"PRelu", "Relu", "LeakyRelu"}) {
    for (const int64_t C : {24, 40}) {
      for (const int64_t stride : {1, 2}) {
        for (const int64_t per_group : {1, 2}) {
          const std::string path = depthwise_net(dir, C, stride, per_group, activation);
          const runtime::Tensor x{{3, C, 10, 10}, random_values(3 * C * 100, 506, -2.0f, 2.0f)};
          for (const runtime::Precision p : precisions) {
            SCOPED_TRACE(runtime::to_string(p) + " " + activation + " C " + std::to_string(C) + " stride " +
                         std::to_string(stride) + " channels per group " + std::to_string(per_group));
            const bool onednn_faster = activation != "PRelu" && p == runtime::Precision::bf16;
            const Difference d = loop_against_onednn(path, p, x, "dw", "act_d", "ARCFORGE_RUNTIME_DEPTHWISE",
                                                     onednn_faster ? "" : "loop:depthwise");
            // fp32: both accumulate 9 (18) products in fp32; bf16: both round the same fp32 sums to
            // bf16, in whichever order they add them.
            EXPECT_LE(d.max_abs, (p == runtime::Precision::fp32 ? 1e-5 : 1.6e-2) * d.scale);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace arcforge::test
