// arcforge's stem convolution (src/runtime/stem_conv.hpp) at every instruction-set level this CPU
// runs, against a double-precision convolution (reference_ops.hpp) with the activation applied in
// double: 1 and 3 input channels, output channels that fill vectors of 16 and 8 and leave a tail,
// every output layout and type, strides 1 and 2, symmetric, asymmetric, absent and wide padding,
// each activation. Then the loop in a model, against oneDNN's convolution where it is turned off.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "arcforge/cpu/lanes.hpp"
#include "arcforge/runtime/model.hpp"
#include "forced_isa.hpp"
#include "loop_layouts_for_tests.hpp"
#include "onnx_builder.hpp"
#include "parity_util.hpp"
#include "reference_ops.hpp"
#include "stem_conv.hpp"

namespace arcforge::test {
namespace {

using runtime::detail::StemConv;
using Type = StemConv::Type;

struct Shape {
  int64_t in_channels, out_channels, h, w, stride, pad_t, pad_l, pad_b, pad_r;
};

enum class Activation { none, relu, prelu, clip };

const char* name_of(Activation a) {
  switch (a) {
    case Activation::none: return "none";
    case Activation::relu: return "relu";
    case Activation::prelu: return "prelu";
    case Activation::clip: return "clip";
  }
  return "?";
}

constexpr int64_t kBatch = 2;
constexpr uint16_t kSentinel = 0x5A5A;

void check_case(const Shape& s, int block, Type dst, Activation act) {
  const uint32_t seed = static_cast<uint32_t>(s.out_channels * 131 + s.h * 17 + s.w + s.stride * 7 + s.pad_t);
  const std::vector<float> x =
      random_values(static_cast<std::size_t>(kBatch * s.in_channels * s.h * s.w), seed, -2.0f, 2.0f);
  const int64_t taps = s.in_channels * 9;
  const std::vector<float> w = random_values(static_cast<std::size_t>(s.out_channels * taps), seed + 1, -0.6f, 0.6f);
  StemConv c;
  c.bias = random_values(static_cast<std::size_t>(s.out_channels), seed + 2);
  c.negative_slope.assign(static_cast<std::size_t>(s.out_channels), 1.0f);
  if (act == Activation::prelu) {
    // Negative, zero, fractional and above one.
    for (int64_t oc = 0; oc < s.out_channels; ++oc) c.negative_slope[oc] = -0.5f + 0.25f * static_cast<float>(oc % 9);
  }
  if (act == Activation::relu) c.lower = 0.0f;
  if (act == Activation::clip) {
    c.lower = -0.75f;
    c.upper = 1.5f;
  }

  int64_t out_h = 0, out_w = 0;
  const auto conv = [&](const ref::Vec& in, const ref::Vec& wt, const ref::Vec& b) {
    return ref::conv2d(in, kBatch, s.in_channels, s.h, s.w, wt, s.out_channels, 3, 3, b, s.stride, s.pad_t, s.pad_l,
                       s.pad_b, s.pad_r, 1, 1, out_h, out_w);
  };
  ref::Vec want = conv(ref::to_double(x), ref::to_double(w), ref::to_double(c.bias));
  ref::Vec abs_x = ref::to_double(x), abs_w = ref::to_double(w), abs_b = ref::to_double(c.bias);
  for (ref::Vec* v : {&abs_x, &abs_w, &abs_b}) {
    for (double& e : *v) e = std::fabs(e);
  }
  const ref::Vec magnitude = conv(abs_x, abs_w, abs_b);
  const int64_t plane = out_h * out_w;
  for (std::size_t k = 0; k < want.size(); ++k) {
    const int64_t oc = static_cast<int64_t>(k) / plane % s.out_channels;
    if (want[k] < 0) want[k] *= c.negative_slope[oc];
    want[k] = std::clamp(want[k], static_cast<double>(c.lower), static_cast<double>(c.upper));
  }

  c.in_channels = s.in_channels;
  c.out_channels = s.out_channels;
  c.in_h = s.h;
  c.in_w = s.w;
  c.out_h = out_h;
  c.out_w = out_w;
  c.stride_h = c.stride_w = s.stride;
  c.pad_t = s.pad_t;
  c.pad_l = s.pad_l;
  c.weights.resize(w.size());
  for (int64_t oc = 0; oc < s.out_channels; ++oc) {
    for (int64_t t = 0; t < taps; ++t) c.weights[t * s.out_channels + oc] = w[oc * taps + t];
  }
  c.destination = dst;
  c.dst_layout = layout_for(block, s.out_channels, out_h, out_w);

  const int64_t rows = kBatch * out_h, count = kBatch * s.out_channels * plane;
  const std::size_t element = dst == Type::f32 ? 4 : 2;
  std::vector<uint16_t> out(static_cast<std::size_t>(count) * element / 2, kSentinel);
  const auto out_offset = [&](int64_t n, int64_t oc, int64_t y, int64_t i) {
    return offset_in(block, n, oc, y, i, s.out_channels, out_h, out_w);
  };
  // The inner rows first: the first and last rows must stay untouched.
  runtime::detail::stem_conv_rows(c, x.data(), out.data(), 1, rows - 1);
  for (const int64_t row : {int64_t{0}, rows - 1}) {
    if (rows < 2) break;
    const int64_t k = out_offset(row / out_h, 0, row % out_h, 0) * static_cast<int64_t>(element) / 2;
    ASSERT_EQ(out[k], kSentinel) << "row " << row << " written by a range that excludes it";
  }
  runtime::detail::stem_conv_rows(c, x.data(), out.data(), 0, std::min<int64_t>(1, rows));
  if (rows > 1) runtime::detail::stem_conv_rows(c, x.data(), out.data(), rows - 1, rows);

  for (int64_t n = 0; n < kBatch; ++n)
    for (int64_t oc = 0; oc < s.out_channels; ++oc)
      for (int64_t y = 0; y < out_h; ++y)
        for (int64_t i = 0; i < out_w; ++i) {
          const int64_t k = ((n * s.out_channels + oc) * out_h + y) * out_w + i, at = out_offset(n, oc, y, i);
          double got;
          if (dst == Type::f32) {
            float v;
            std::memcpy(&v, reinterpret_cast<const char*>(out.data()) + 4 * at, 4);
            got = v;
          } else {
            got = cpu::lanes::load(out[at]);
          }
          // fp32 accumulation of up to 28 terms (times a slope up to 1.5), then bf16's 8 bits.
          double tolerance = 4e-7 * 30 * magnitude[k] * 1.5;
          if (dst == Type::bf16) tolerance += std::fabs(want[k]) * std::ldexp(1.0, -8);
          ASSERT_LE(std::fabs(got - want[k]), tolerance)
              << "image " << n << " channel " << oc << " at (" << y << ", " << i << "): " << got << " vs " << want[k];
        }
}

TEST(StemConv, MatchesTheDoubleReferenceAtEveryIsa) {
  const std::vector<Shape> shapes = {
      {3, 16, 20, 22, 2, 1, 1, 1, 1},  // SCRFD's and YuNet's stem, small
      {3, 64, 9, 11, 1, 1, 1, 1, 1},   // IResNet's: stride 1, four vectors of 16
      {3, 24, 7, 13, 2, 0, 0, 1, 1},   // 16 + 8 channels; asymmetric padding (SAME_UPPER)
      {1, 8, 6, 19, 1, 1, 1, 1, 1},    // one input channel; a long row: blocks of four columns
      {3, 12, 5, 6, 1, 0, 0, 0, 0},    // 8 + 4 channels (the planner keeps oneDNN); no padding
      {3, 16, 1, 1, 1, 1, 1, 1, 1},    // one pixel: every tap but the centre in the padding
      {1, 16, 4, 4, 1, 2, 2, 2, 2},    // padding wider than the kernel: whole columns of zeros
  };
  int cases = 0;
  for (const auto isa : runnable_isas()) {
    ForcedIsa forced(isa);
    for (const Shape& s : shapes) {
      for (const int block : {0, 8, 16}) {
        if (block != 0 && s.out_channels % block != 0) continue;
        for (const Type dst : {Type::f32, Type::bf16}) {
          for (const Activation act : {Activation::none, Activation::relu, Activation::prelu, Activation::clip}) {
            SCOPED_TRACE(std::string(isa_name(isa)) + " " + std::to_string(s.in_channels) + " -> " +
                         std::to_string(s.out_channels) + " channels, " + std::to_string(s.h) + "x" +
                         std::to_string(s.w) + " stride " + std::to_string(s.stride) + " pad_t " +
                         std::to_string(s.pad_t) + (block ? " nChw" + std::to_string(block) + "c" : " channels-last") +
                         (dst == Type::f32 ? " f32 " : " bf16 ") + name_of(act));
            check_case(s, block, dst, act);
            if (HasFatalFailure()) return;
            ++cases;
          }
        }
      }
    }
  }
  std::printf("[stem conv] %d cases against the double reference\n", cases);
}

// A stem: Conv 3x3 over a planar image, then the activation.
std::string stem_net(const TempDir& dir, int64_t in_channels, int64_t out_channels, int64_t stride,
                     const std::string& activation) {
  OnnxBuilder m(13);
  m.input("x", {-1, in_channels, 30, 26}).output("y");
  const int64_t weights = out_channels * in_channels * 9;
  m.initializer("w", {out_channels, in_channels, 3, 3}, random_values(weights, 601, -0.5f, 0.5f));
  m.initializer("b", {out_channels}, random_values(out_channels, 602));
  auto& conv = m.node("Conv", {"x", "w", "b"}, {activation.empty() ? "y" : "c"}, "stem");
  OnnxBuilder::attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  OnnxBuilder::attr(conv, "strides", std::vector<int64_t>{stride, stride});
  if (activation == "Relu") m.node("Relu", {"c"}, {"y"}, "act");
  if (activation == "PRelu") {
    m.initializer("s", {out_channels, 1, 1}, random_values(out_channels, 603, -0.2f, 1.2f));
    m.node("PRelu", {"c", "s"}, {"y"}, "act");
  }
  if (activation == "Clip") {
    m.initializer("lo", {}, {-0.5f}).initializer("hi", {}, {1.0f});  // both bounds reached
    m.node("Clip", {"c", "lo", "hi"}, {"y"}, "act");
  }
  return m.save(dir.file("stem" + std::to_string(in_channels) + "_" + std::to_string(out_channels) + "_" +
                         std::to_string(stride) + activation + ".onnx"));
}

TEST(StemConv, RunsTheModelsFirstConvWithItsActivation) {
  TempDir dir;
  std::vector<runtime::Precision> precisions = {runtime::Precision::fp32};
  if (runtime::cpu_runs_bf16()) precisions.push_back(runtime::Precision::bf16);
  const bool vectors = cpu::cpu_kernel_active_isa() >= cpu::CpuKernelIsa::avx2;
  struct Case {
    int64_t in_channels, out_channels, stride;
    std::string activation;
    bool loop;  // whether the stem loop takes it (on a CPU with AVX2)
  };
  const std::vector<Case> cases = {
      {3, 16, 2, "Relu", true}, {3, 64, 1, "PRelu", true}, {1, 24, 2, "Clip", true},
      {3, 32, 1, "", true},     {3, 12, 2, "Relu", false},  // 12 channels: oneDNN's
  };
  for (const Case& c : cases) {
    const std::string path = stem_net(dir, c.in_channels, c.out_channels, c.stride, c.activation);
    const runtime::Tensor x{{3, c.in_channels, 30, 26}, random_values(3 * c.in_channels * 30 * 26, 604, -2.0f, 2.0f)};
    for (const runtime::Precision p : precisions) {
      SCOPED_TRACE(runtime::to_string(p) + " " + std::to_string(c.in_channels) + " -> " +
                   std::to_string(c.out_channels) + " stride " + std::to_string(c.stride) + " " + c.activation);
      const Difference d =
          loop_against_onednn(path, p, x, "stem", "act", "ARCFORGE_RUNTIME_STEM", c.loop && vectors ? "loop:stem" : "");
      // fp32: both sum 27 products in fp32; bf16: both round fp32 sums to bf16 (oneDNN also rounds
      // the input and weights to bf16 first).
      EXPECT_LE(d.max_abs, (p == runtime::Precision::fp32 ? 1e-5 : 3e-2) * d.scale);
    }
  }
}

}  // namespace
}  // namespace arcforge::test
