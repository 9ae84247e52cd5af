// 3x3 stride-1 convolutions as Winograd F(4x4, 3x3) (src/runtime/ops_conv_winograd.cpp), against a
// double-precision convolution written in the test: every fused post-op, padding on any side,
// output sizes that are not a multiple of the 4x4 tile, several chunks of tiles with a partial last
// one, and the shapes that must keep oneDNN's direct kernel. The method runs where arcforge's CPU
// kernels run at the AVX2 or AVX-512 level, so each test runs at each of those the CPU has.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "arcforge/runtime/model.hpp"
#include "forced_isa.hpp"
#include "onnx_builder.hpp"
#include "reference_ops.hpp"

namespace arcforge::test {
namespace {

using runtime::Model;
using runtime::Tensor;

struct WinoCase {
  const char* name;
  int64_t n, c, k, h, w;
  std::vector<int64_t> pads;  // top, left, bottom, right
  bool bias;
  std::string post;  // "", relu, clip, leaky, prelu (per channel), prelu1 (one slope), scale, add, add_relu
  bool winograd;     // whether the method can take the convolution (its kind, before the size thresholds)
  int64_t stride = 1, group = 1, kernel = 3, dilation = 1;
  int64_t tiles() const {
    const int64_t out_h = (h + pads[0] + pads[2] - ((kernel - 1) * dilation + 1)) / stride + 1;
    const int64_t out_w = (w + pads[1] + pads[3] - ((kernel - 1) * dilation + 1)) / stride + 1;
    return n * ((out_h + 3) / 4) * ((out_w + 3) / 4);
  }
};

void PrintTo(const WinoCase& c, std::ostream* os) { *os << c.name; }

// The instruction-set levels the method runs at that this CPU has: AVX2 (nChw8c activations) and
// AVX-512 (nChw16c where both channel counts are multiples of 16, else nChw8c).
std::vector<cpu::CpuKernelIsa> winograd_levels() {
  std::vector<cpu::CpuKernelIsa> levels;
  for (auto level : {cpu::CpuKernelIsa::avx2, cpu::CpuKernelIsa::avx512}) {
    if (cpu::cpu_kernel_best_isa() >= level) levels.push_back(level);
  }
  return levels;
}

// Fewer tiles in a run, or fewer channels on either side, keep oneDNN's direct kernel
// (ops_conv_winograd.cpp, measured per level).
int64_t min_tiles(cpu::CpuKernelIsa level) { return level == cpu::CpuKernelIsa::avx2 ? 8 : 16; }
int64_t min_channels(cpu::CpuKernelIsa level) { return level == cpu::CpuKernelIsa::avx2 ? 32 : 16; }

bool takes_winograd(const WinoCase& c, cpu::CpuKernelIsa level) {
  return c.winograd && c.tiles() >= min_tiles(level) && std::min(c.c, c.k) >= min_channels(level);
}

// The schedule the runtime picks: per thread where a block of at least 12 tiles' transformed inputs
// and products fits in 384 KiB (ops_conv_winograd.cpp), chunked with more channels.
const char* default_schedule(const WinoCase& c) {
  const int64_t fitting = static_cast<int64_t>(384.0 * 1024 / (4.0 * 36 * static_cast<double>(c.c + c.k))) / 6 * 6;
  return fitting >= 12 ? "per_thread" : "chunked";
}

// Sets ARCFORGE_RUNTIME_WINOGRAD_SCHEDULE (read when planning) for a scope; "" leaves it unset.
class ForcedSchedule {
 public:
  explicit ForcedSchedule(const std::string& schedule) {
    if (!schedule.empty()) ::setenv("ARCFORGE_RUNTIME_WINOGRAD_SCHEDULE", schedule.c_str(), 1);
  }
  ~ForcedSchedule() { ::unsetenv("ARCFORGE_RUNTIME_WINOGRAD_SCHEDULE"); }
};

struct Built {
  std::string path;
  std::vector<float> weights, bias, slope, residual;
  int64_t out_h = 0, out_w = 0;
};

Built build(const WinoCase& c, const std::string& path) {
  Built b;
  const int64_t in_per_group = c.c / c.group;
  b.weights = random_values(c.k * in_per_group * c.kernel * c.kernel, 1, -0.3f, 0.3f);
  if (c.bias) b.bias = random_values(c.k, 2);
  b.slope = random_values(c.post == "prelu1" ? 1 : c.k, 3, 0.0f, 0.5f);
  const int64_t reach = (c.kernel - 1) * c.dilation + 1;
  b.out_h = (c.h + c.pads[0] + c.pads[2] - reach) / c.stride + 1;
  b.out_w = (c.w + c.pads[1] + c.pads[3] - reach) / c.stride + 1;

  OnnxBuilder m(13);
  m.input("x", {-1, c.c, c.h, c.w});
  const bool residual = c.post.rfind("add", 0) == 0;
  if (residual) m.input("r", {-1, c.k, b.out_h, b.out_w});
  m.output("y");
  m.initializer("w", {c.k, in_per_group, c.kernel, c.kernel}, b.weights);
  std::vector<std::string> conv_inputs = {"x", "w"};
  if (c.bias) {
    m.initializer("b", {c.k}, b.bias);
    conv_inputs.push_back("b");
  }
  const std::string conv_out = c.post.empty() ? "y" : "conv_out";
  auto& conv = m.node("Conv", conv_inputs, {conv_out}, "conv");
  OnnxBuilder::attr(conv, "pads", c.pads);
  OnnxBuilder::attr(conv, "strides", std::vector<int64_t>{c.stride, c.stride});
  OnnxBuilder::attr(conv, "dilations", std::vector<int64_t>{c.dilation, c.dilation});
  OnnxBuilder::attr(conv, "group", c.group);
  if (c.post == "relu") m.node("Relu", {conv_out}, {"y"});
  if (c.post == "clip") {
    m.initializer("lo", {}, {-0.5f}).initializer("hi", {}, {1.5f});
    m.node("Clip", {conv_out, "lo", "hi"}, {"y"});
  }
  if (c.post == "leaky") OnnxBuilder::attr(m.node("LeakyRelu", {conv_out}, {"y"}), "alpha", 0.2f);
  if (c.post == "prelu" || c.post == "prelu1") {
    m.initializer("slope", c.post == "prelu" ? std::vector<int64_t>{c.k, 1, 1} : std::vector<int64_t>{1}, b.slope);
    m.node("PRelu", {conv_out, "slope"}, {"y"});
  }
  if (c.post == "scale") {
    m.initializer("factor", {}, {-0.75f});
    m.node("Mul", {conv_out, "factor"}, {"y"});
  }
  if (c.post == "add") m.node("Add", {"r", conv_out}, {"y"});
  if (c.post == "add_relu") {
    m.node("Add", {conv_out, "r"}, {"sum"});
    m.node("Relu", {"sum"}, {"y"});
  }
  b.path = m.save(path);
  return b;
}

ref::Vec reference(const WinoCase& c, const Built& b, const Tensor& x, const Tensor& r, bool post_ops = true) {
  int64_t oh = 0, ow = 0;
  ref::Vec y = ref::conv2d(ref::to_double(x.data), c.n, c.c, c.h, c.w, ref::to_double(b.weights), c.k, c.kernel,
                           c.kernel, ref::to_double(b.bias), c.stride, c.pads[0], c.pads[1], c.pads[2], c.pads[3],
                           c.group, c.dilation, oh, ow);
  for (std::size_t j = 0; j < y.size() && post_ops; ++j) {
    const int64_t channel = static_cast<int64_t>(j) / (oh * ow) % c.k;
    double& v = y[j];
    if (c.post == "relu") v = std::max(v, 0.0);
    if (c.post == "clip") v = std::clamp(v, -0.5, 1.5);
    if (c.post == "leaky") v = v >= 0 ? v : static_cast<double>(0.2f) * v;
    if (c.post == "prelu") v = v >= 0 ? v : v * b.slope[channel];
    if (c.post == "prelu1") v = v >= 0 ? v : v * b.slope[0];
    if (c.post == "scale") v *= -0.75;
    if (c.post.rfind("add", 0) == 0) v += r.data[j];
    if (c.post == "add_relu") v = std::max(v, 0.0);
  }
  return y;
}

// The kernels of the profiled run's steps for the convolution, e.g. "jit:blk winograd_f4x4_3x3:..."
// (a reorder of the input into nChw8c or nChw16c, then the method) or oneDNN's convolution alone.
std::string conv_kernels(const Model& model, const std::vector<Tensor>& inputs) {
  auto session = model.new_session();
  std::vector<runtime::StepTiming> steps;
  session.run(inputs, steps);
  std::string kernels;
  for (const auto& step : steps) {
    if (step.node == "conv") kernels += (kernels.empty() ? "" : " ") + step.kernel;
  }
  return kernels;
}

bool ran_winograd(const std::string& kernels) { return kernels.find("winograd_f4x4_3x3") != std::string::npos; }

struct Ran {
  std::string kernels;
  std::vector<Tensor> outputs;
};

// Loads and runs the model with ARCFORGE_RUNTIME_WINOGRAD=mode (read when planning), unset after.
Ran run_with_mode(const char* mode, const std::string& path, const std::vector<Tensor>& inputs) {
  ::setenv("ARCFORGE_RUNTIME_WINOGRAD", mode, 1);
  const Model model = Model::load(path, {.threads = 2});
  Ran ran{conv_kernels(model, inputs), model.run(inputs)};
  ::unsetenv("ARCFORGE_RUNTIME_WINOGRAD");
  return ran;
}

// F(4x4, 3x3) in fp32: the input transform scales a tile's values by up to 10 and the weights' by
// 1/24 to 1, so its rounding is several times a direct sum's (measured here on AVX2: 2.6e-6 to
// 5.3e-6 of the convolution's largest output, against 3.6e-7 to 8.2e-7 for oneDNN's direct kernel).
constexpr double kTolerance = 1e-5;

class ConvWinograd : public ::testing::TestWithParam<WinoCase> {};

TEST_P(ConvWinograd, MatchesDoubleReferenceWithEveryPostOp) {
  const WinoCase& c = GetParam();
  if (winograd_levels().empty()) GTEST_SKIP() << "SKIPPED: this CPU has no AVX2, where the method is used";
  TempDir dir;
  const Built b = build(c, dir.file("conv.onnx"));
  std::vector<Tensor> inputs = {Tensor{{c.n, c.c, c.h, c.w}, random_values(c.n * c.c * c.h * c.w, 4, -2.0f, 2.0f)}};
  Tensor r{{c.n, c.k, b.out_h, b.out_w}, random_values(c.n * c.k * b.out_h * b.out_w, 5, -2.0f, 2.0f)};
  if (c.post.rfind("add", 0) == 0) inputs.push_back(r);
  const ref::Vec want = reference(c, b, inputs[0], r);
  // Relative to the convolution's largest output: a clip or scale after it does not shrink its error.
  const double scale = ref::max_abs(reference(c, b, inputs[0], r, false));

  // Each level, with the schedule the runtime picks, then each schedule forced.
  for (const cpu::CpuKernelIsa level : winograd_levels()) {
    for (const std::string schedule : {"", "per_thread", "chunked"}) {
      if (!schedule.empty() && !takes_winograd(c, level)) continue;  // the same direct kernel again
      const std::string label = std::string(isa_name(level)) + (schedule.empty() ? "" : ", " + schedule + " forced");
      SCOPED_TRACE(label);
      ForcedIsa forced(level);
      ForcedSchedule forced_schedule(schedule);
      const Model model = Model::load(b.path, {.threads = 2});
      const std::string kernel = conv_kernels(model, inputs);
      EXPECT_EQ(ran_winograd(kernel), takes_winograd(c, level)) << "kernels: " << kernel;
      if (ran_winograd(kernel)) {
        const bool per_thread = kernel.find(":per_thread") != std::string::npos;
        EXPECT_EQ(per_thread, (schedule.empty() ? default_schedule(c) : schedule) == std::string("per_thread"))
            << "kernels: " << kernel;
      }
      EXPECT_EQ(model.optimized_node_count(), 1u) << "the post-op should be fused into the convolution";
      const std::vector<Tensor> y = model.run(inputs);
      ASSERT_EQ(y.size(), 1u);
      EXPECT_EQ(y[0].shape, (std::vector<int64_t>{c.n, c.k, b.out_h, b.out_w}));
      const double diff = ref::max_abs_diff(y[0].data, want);
      std::printf("[figures] %s at %s (%s): max |ours - double| %.3g of %.3g (%.2g)\n", c.name, label.c_str(),
                  kernel.c_str(), diff, scale, diff / scale);
      EXPECT_LE(diff, kTolerance * scale);
      // The residual input is read, not overwritten.
      if (c.post.rfind("add", 0) == 0) {
        EXPECT_EQ(inputs[1].data, r.data);
      }
    }
  }
}

// 32 to 32 channels at 124x124, two images: 1,922 tiles, per thread in blocks of 42 (the last one
// partial, and not a multiple of the products' 6 rows), chunked in 3 chunks of 641 (the last one
// partial). 128 channels on both sides: chunked by default; 16 tiles on 2 threads: blocks of 12,
// each thread's last row block partial.
INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvWinograd,
    ::testing::Values(
        WinoCase{"plain_14x14", 1, 32, 32, 14, 14, {1, 1, 1, 1}, true, "", true},
        WinoCase{"no_bias_odd_13x17_batch3", 3, 40, 48, 13, 17, {1, 1, 1, 1}, false, "", true},
        WinoCase{"relu", 2, 32, 64, 12, 12, {1, 1, 1, 1}, true, "relu", true},
        WinoCase{"clip", 2, 64, 32, 9, 11, {1, 1, 1, 1}, true, "clip", true},
        WinoCase{"leaky_relu", 2, 32, 48, 10, 10, {1, 1, 1, 1}, true, "leaky", true},
        WinoCase{"prelu_per_channel", 2, 48, 40, 15, 15, {1, 1, 1, 1}, true, "prelu", true},
        WinoCase{"prelu_one_slope", 1, 32, 32, 16, 16, {1, 1, 1, 1}, false, "prelu1", true},
        WinoCase{"scale", 1, 32, 32, 16, 16, {1, 1, 1, 1}, true, "scale", true},
        WinoCase{"residual_add", 2, 32, 32, 14, 14, {1, 1, 1, 1}, true, "add", true},
        WinoCase{"residual_add_then_relu", 3, 64, 64, 7, 9, {1, 1, 1, 1}, true, "add_relu", true},
        WinoCase{"valid_no_padding", 2, 32, 32, 11, 11, {0, 0, 0, 0}, true, "", true},
        // 9 tiles: the method at the AVX2 level, oneDNN's direct kernel at AVX-512's.
        WinoCase{"asymmetric_padding", 1, 32, 32, 10, 9, {2, 0, 0, 2}, true, "relu", true},
        WinoCase{"chunks_with_partial_last", 2, 32, 32, 124, 124, {1, 1, 1, 1}, true, "prelu", true},
        // 24 channels: oneDNN's direct kernel at the AVX2 level, the method at AVX-512's.
        WinoCase{"channels_24", 1, 24, 24, 20, 20, {1, 1, 1, 1}, true, "relu", true},
        WinoCase{"channels_128", 1, 128, 128, 16, 13, {1, 1, 1, 1}, true, "prelu", true},
        // oneDNN's direct kernel: too few tiles, stride 2, grouped, 5x5, dilated, channels not a
        // multiple of 8.
        WinoCase{"four_tiles_direct", 1, 64, 64, 7, 7, {1, 1, 1, 1}, true, "", false},
        WinoCase{"stride_2_direct", 1, 32, 32, 16, 16, {1, 1, 1, 1}, true, "", false, 2},
        WinoCase{"grouped_direct", 1, 64, 64, 16, 16, {1, 1, 1, 1}, true, "", false, 1, 2},
        WinoCase{"kernel_5x5_direct", 1, 32, 32, 16, 16, {2, 2, 2, 2}, true, "", false, 1, 1, 5},
        WinoCase{"dilated_direct", 1, 32, 32, 16, 16, {2, 2, 2, 2}, true, "", false, 1, 1, 3, 2},
        WinoCase{"channels_36_direct", 1, 36, 36, 16, 16, {1, 1, 1, 1}, true, "", false}),
    [](const ::testing::TestParamInfo<WinoCase>& info) { return std::string(info.param.name); });

TEST(ConvWinogradSwitch, EnvironmentTurnsItOffAndTheResultsAgree) {
  if (winograd_levels().empty()) GTEST_SKIP() << "SKIPPED: this CPU has no AVX2, where the method is used";
  const WinoCase c{"switch", 2, 32, 32, 14, 14, {1, 1, 1, 1}, true, "prelu", true};
  TempDir dir;
  const Built b = build(c, dir.file("conv.onnx"));
  const std::vector<Tensor> inputs = {
      Tensor{{c.n, c.c, c.h, c.w}, random_values(c.n * c.c * c.h * c.w, 6, -2.0f, 2.0f)}};
  for (const cpu::CpuKernelIsa level : winograd_levels()) {
    SCOPED_TRACE(isa_name(level));
    ForcedIsa forced(level);
    const Model winograd = Model::load(b.path, {.threads = 2});
    EXPECT_TRUE(ran_winograd(conv_kernels(winograd, inputs)));
    const std::vector<Tensor> fast = winograd.run(inputs);

    const Ran direct = run_with_mode("0", b.path, inputs);
    EXPECT_FALSE(ran_winograd(direct.kernels)) << direct.kernels;
    const ref::Vec want = ref::to_double(direct.outputs.at(0).data);
    EXPECT_LE(ref::max_abs_diff(fast.at(0).data, want), kTolerance * ref::max_abs(want));
  }
}

// ARCFORGE_RUNTIME_WINOGRAD=all (for measuring the thresholds, and in the fuzz build) takes shapes
// below them, at the baseline level too, and they are computed as well.
TEST(ConvWinogradSwitch, AllTakesShapesBelowTheThresholds) {
  std::vector<cpu::CpuKernelIsa> levels = winograd_levels();
  levels.insert(levels.begin(), cpu::CpuKernelIsa::baseline);
  for (const cpu::CpuKernelIsa level : levels) {
    ForcedIsa forced(level);
    for (const WinoCase& c : {WinoCase{"24_channels", 1, 24, 16, 20, 20, {1, 1, 1, 1}, true, "prelu", true},
                              WinoCase{"4_tiles", 1, 64, 64, 7, 7, {1, 1, 1, 1}, true, "relu", true}}) {
      SCOPED_TRACE(std::string(isa_name(level)) + " " + c.name);
      TempDir dir;
      const Built b = build(c, dir.file("conv.onnx"));
      const std::vector<Tensor> inputs = {
          Tensor{{c.n, c.c, c.h, c.w}, random_values(c.n * c.c * c.h * c.w, 7, -2.0f, 2.0f)}};
      const Ran all = run_with_mode("all", b.path, inputs);
      EXPECT_TRUE(ran_winograd(all.kernels)) << all.kernels;
      const ref::Vec want = reference(c, b, inputs[0], Tensor{});
      const double scale = ref::max_abs(reference(c, b, inputs[0], Tensor{}, false));
      EXPECT_LE(ref::max_abs_diff(all.outputs.at(0).data, want), kTolerance * scale);
    }
  }
}

}  // namespace
}  // namespace arcforge::test
