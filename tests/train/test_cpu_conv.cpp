// arcforge's grouped-convolution kernel (train/nn/grouped_conv.cpp) against libtorch's convolution
// and its autograd run in double precision on the same (already rounded) inputs: depthwise and
// two-channel groups, strides 1 and 2, MobileFaceNet's 3x3 and GDC 7x7 kernels, a rectangular
// kernel with uneven padding, channel counts that end in a partial vector, float and bf16, on every
// instruction set this CPU runs; then the module routing, the autocast path and MobileFaceNet wired
// through it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "every_isa.hpp"
#include "train/compat/torch_compat.hpp"
#include "train/nn/cpu_conv.hpp"
#include "train/nn/cpu_kernel_isa.hpp"
#include "train/nn/grouped_conv.hpp"
#include "train/nn/mobilefacenet.hpp"

#include "every_isa.hpp"
#include "median_time.hpp"

namespace {

namespace an = arcforge::nn;

struct Case {
  std::string name;
  std::vector<int64_t> x_shape;  // [N, C, H, W]
  int64_t per_group = 1;
  std::array<int64_t, 2> kernel{3, 3};
  an::GroupedConvSpec spec;
  torch::Dtype dtype = torch::kFloat;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

double relative(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kDouble) - want).abs().max().item<double>() / want.abs().max().item<double>();
}

class GroupedConvKernel : public ::testing::TestWithParam<Case> {};

void expect_matches_double_reference(const Case& c) {
  torch::manual_seed(11);
  const int64_t channels = c.x_shape[1];
  an::GroupedConvSpec spec = c.spec;
  spec.groups = channels / c.per_group;
  const torch::Tensor x = torch::randn(c.x_shape)
                              .contiguous(at::MemoryFormat::ChannelsLast)
                              .to(c.dtype)
                              .requires_grad_(true);
  const torch::Tensor w =
      torch::randn({channels, c.per_group, c.kernel[0], c.kernel[1]}).to(c.dtype).requires_grad_(true);
  ASSERT_TRUE(an::grouped_conv_uses_cpu_kernel(x, w, spec));

  const torch::Tensor y = an::grouped_conv2d(x, w, spec);
  EXPECT_EQ(y.scalar_type(), c.dtype);
  EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast));
  const torch::Tensor gy = torch::randn(y.sizes()).to(c.dtype);
  y.backward(gy);
  ASSERT_TRUE(x.grad().defined());
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(x.grad().scalar_type(), c.dtype);
  EXPECT_EQ(w.grad().scalar_type(), c.dtype);

  const torch::Tensor xd = x.detach().to(torch::kDouble).contiguous().requires_grad_(true);
  const torch::Tensor wd = w.detach().to(torch::kDouble).requires_grad_(true);
  const torch::Tensor y_ref = at::conv2d(xd, wd, {}, {spec.stride[0], spec.stride[1]},
                                         {spec.padding[0], spec.padding[1]}, {1, 1}, spec.groups);
  ASSERT_EQ(y.sizes(), y_ref.sizes());
  y_ref.backward(gy.to(torch::kDouble));

  // float: sums of a few dozen float products (the weight's gradient: per row in float, then in
  // double); bf16: each result rounded once to 8 bits of mantissa.
  const double tolerance = c.dtype == torch::kFloat ? 2e-6 : 1.0 / 128;
  EXPECT_LT(relative(y.detach(), y_ref.detach()), tolerance) << "forward";
  EXPECT_LT(relative(x.grad(), xd.grad()), tolerance) << "input gradient";
  EXPECT_LT(relative(w.grad(), wd.grad()), tolerance) << "weight gradient";
}

TEST_P(GroupedConvKernel, MatchesDoubleReferenceOnEveryInstructionSet) {
  on_every_instruction_set([] { expect_matches_double_reference(GetParam()); });
}

an::GroupedConvSpec spec(std::array<int64_t, 2> stride, std::array<int64_t, 2> padding) {
  an::GroupedConvSpec s;
  s.stride = stride;
  s.padding = padding;
  return s;
}

// Channel counts: 6 (all in the scalar tail), 20 and 34 (whole vectors of 16 or 8, then a tail:
// the general path), 32, 48 and 128 (whole vectors only: the 3x3 sliding window where it applies).
INSTANTIATE_TEST_SUITE_P(
    Shapes, GroupedConvKernel,
    ::testing::Values(
        Case{"depthwise_3x3_float", {2, 20, 9, 11}, 1, {3, 3}, spec({1, 1}, {1, 1})},
        Case{"depthwise_3x3_stride2_float", {2, 34, 9, 11}, 1, {3, 3}, spec({2, 2}, {1, 1})},
        Case{"pairs_3x3_float", {2, 20, 9, 11}, 2, {3, 3}, spec({1, 1}, {1, 1})},
        Case{"pairs_3x3_stride2_float", {2, 34, 10, 7}, 2, {3, 3}, spec({2, 2}, {1, 1})},
        Case{"pairs_narrow_float", {3, 6, 5, 5}, 2, {3, 3}, spec({1, 1}, {1, 1})},
        Case{"gdc_7x7_float", {4, 34, 7, 7}, 1, {7, 7}, spec({1, 1}, {0, 0})},
        Case{"rectangular_float", {2, 20, 8, 9}, 2, {3, 5}, spec({1, 2}, {0, 2})},
        Case{"mbf_conv2_dw_float", {2, 128, 14, 14}, 2, {3, 3}, spec({1, 1}, {1, 1})},
        // Whole vectors of 3x3 with padding 1: the sliding-window path, odd sizes at stride 2.
        Case{"window_depthwise_float", {2, 32, 9, 11}, 1, {3, 3}, spec({1, 1}, {1, 1})},
        Case{"window_depthwise_stride2_float", {2, 48, 9, 11}, 1, {3, 3}, spec({2, 2}, {1, 1})},
        Case{"window_pairs_stride2_float", {2, 32, 10, 7}, 2, {3, 3}, spec({2, 2}, {1, 1})},
        Case{"window_depthwise_bf16", {2, 32, 9, 11}, 1, {3, 3}, spec({1, 1}, {1, 1}), torch::kBFloat16},
        Case{"window_pairs_stride2_bf16", {2, 32, 9, 11}, 2, {3, 3}, spec({2, 2}, {1, 1}), torch::kBFloat16},
        Case{"depthwise_3x3_bf16", {2, 20, 9, 11}, 1, {3, 3}, spec({1, 1}, {1, 1}), torch::kBFloat16},
        Case{"pairs_3x3_stride2_bf16", {2, 34, 10, 7}, 2, {3, 3}, spec({2, 2}, {1, 1}), torch::kBFloat16},
        Case{"gdc_7x7_bf16", {4, 34, 7, 7}, 1, {7, 7}, spec({1, 1}, {0, 0}), torch::kBFloat16},
        Case{"mbf_conv2_dw_bf16", {2, 128, 14, 14}, 2, {3, 3}, spec({1, 1}, {1, 1}), torch::kBFloat16}),
    [](const auto& info) { return info.param.name; });

// A Conv2d module goes to the grouped kernel when it fits, else to its own forward.
TEST(CpuConv, ModulesGoToTheKernelThatFits) {
  torch::manual_seed(9);
  auto check = [](torch::nn::Conv2dOptions options, int64_t in_channels, bool input_grad, bool kernel) {
    torch::nn::Conv2d conv(options.bias(false));
    const torch::Tensor x = torch::randn({2, in_channels, 9, 9}).contiguous(at::MemoryFormat::ChannelsLast)
                                .requires_grad_(input_grad);
    const torch::Tensor ours = an::conv2d_forward(conv, x), theirs = conv->forward(x);
    EXPECT_LT(relative(ours.detach(), theirs.detach().to(torch::kDouble)), 1e-5);
    // The kernel's output is made by arcforge's autograd node, libtorch's by its convolution's.
    EXPECT_EQ(ours.grad_fn()->name().find("GroupedConv") != std::string::npos, kernel) << ours.grad_fn()->name();
  };
  check(torch::nn::Conv2dOptions(16, 16, 3).padding(1).groups(8), 16, true, true);    // 2 per group
  check(torch::nn::Conv2dOptions(16, 16, 3).padding(1).groups(16), 16, true, true);   // depthwise
  check(torch::nn::Conv2dOptions(8, 16, 1), 8, true, false);                          // dense: libtorch
  check(torch::nn::Conv2dOptions(16, 16, 3).padding(1).groups(4), 16, true, false);   // 4 per group
  check(torch::nn::Conv2dOptions(16, 16, 3).padding(1).dilation(2).groups(8), 16, true, false);  // dilated
}

// A Linear over tokens runs as a 1x1 convolution on a CPU with AVX-512: the same values and
// gradients as the module's own forward in double, float and bf16 (under autocast, as training runs
// it); other inputs, and every input below AVX-512, take the module's forward unchanged.
TEST(CpuConv, TokenLinearMatchesTheModuleInDouble) {
  torch::manual_seed(13);
  on_every_instruction_set([] {
    const bool as_conv = an::cpu_kernel_active_isa() >= an::CpuKernelIsa::avx512;
    EXPECT_EQ(an::linear_runs_as_conv(torch::randn({3, 19, 48})), as_conv);
    EXPECT_FALSE(an::linear_runs_as_conv(torch::randn({3, 7, 48})));
    if (as_conv) return;
    torch::nn::Linear linear(48, 40);
    const torch::Tensor x = torch::randn({3, 19, 48});
    EXPECT_TRUE(torch::equal(an::linear_forward(linear, x), linear->forward(x)));  // the module's own
  });
  for (const bool bias : {true, false}) {
    torch::nn::Linear linear(torch::nn::LinearOptions(48, 40).bias(bias));
    torch::nn::Linear reference(torch::nn::LinearOptions(48, 40).bias(bias));
    {
      torch::NoGradGuard no_grad;
      reference->weight.copy_(linear->weight);
      if (bias) reference->bias.copy_(linear->bias);
    }
    reference->to(torch::kDouble);
    for (const bool bf16 : {false, true}) {
      SCOPED_TRACE(std::string(bias ? "bias" : "no bias") + (bf16 ? ", bf16 autocast" : ", fp32"));
      linear->zero_grad();
      reference->zero_grad();
      const torch::Tensor x = torch::randn({3, 19, 48}).requires_grad_(true);
      torch::Tensor y;
      {
        arcforge::compat::AutocastGuard autocast(torch::kCPU, bf16, at::kBFloat16);
        y = an::linear_forward(linear, x);
      }
      EXPECT_EQ(y.scalar_type(), bf16 ? torch::kBFloat16 : torch::kFloat);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 19, 40}));
      const torch::Tensor gy = torch::randn({3, 19, 40});
      y.backward(gy.to(y.scalar_type()));
      // The output against the layer's inputs as it saw them (under autocast, rounded to bf16), the
      // gradients against the double module.
      auto seen = [&](const torch::Tensor& t) {
        return bf16 ? t.detach().to(torch::kBFloat16).to(torch::kDouble) : t.detach().to(torch::kDouble);
      };
      const torch::Tensor want = torch::nn::functional::linear(seen(x), seen(linear->weight),
                                                               bias ? seen(linear->bias) : torch::Tensor());
      const torch::Tensor xd = x.detach().to(torch::kDouble).requires_grad_(true);
      const double tolerance = bf16 ? 1e-2 : 1e-5;  // below AVX-512, bf16 computes in fp32: closer
      EXPECT_LT(relative(y.detach().to(torch::kFloat), want.detach()), tolerance) << "output";
      const torch::Tensor want_x = reference->forward(xd);
      want_x.backward(gy.to(torch::kDouble));
      EXPECT_LT(relative(x.grad(), xd.grad()), tolerance) << "input gradient";
      EXPECT_LT(relative(linear->weight.grad(), reference->weight.grad()), bf16 ? std::max(2e-2, tolerance) : 1e-5)
          << "weight gradient";
      if (bias) {
        EXPECT_LT(relative(linear->bias.grad(), reference->bias.grad()), tolerance) << "bias gradient";
      }
    }
  }
  // [N, in] rows and a handful of tokens: the module's forward, bit for bit; double too.
  torch::nn::Linear linear(48, 40);
  for (const torch::Tensor& x : {torch::randn({5, 48}), torch::randn({5, 7, 48})})
    EXPECT_TRUE(torch::equal(an::linear_forward(linear, x), linear->forward(x)));
  linear->to(torch::kDouble);
  const torch::Tensor tokens = torch::randn({2, 19, 48}, torch::kDouble);
  EXPECT_TRUE(torch::equal(an::linear_forward(linear, tokens), linear->forward(tokens)));
}

// Under bf16 autocast below AVX-512, dense convolutions and Linear layers compute in fp32 and round
// their output to bf16 (libtorch's bf16 fallback there is ~18x slower than fp32): bit for bit the
// fp32 layer's output rounded, gradients as the double layer's to float precision, and the layers
// fed bf16 outputs. Grouped convolutions keep arcforge's bf16 kernel. At AVX-512, autocast as usual.
TEST(CpuConv, Bf16LayersComputeInFp32BelowAvx512) {
  torch::manual_seed(17);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(8, 16, 3).padding(1).bias(false));
  torch::nn::Conv2d grouped(torch::nn::Conv2dOptions(16, 16, 3).padding(1).groups(16).bias(false));
  torch::nn::Linear linear(48, 40);
  on_every_instruction_set([&] {
    const bool fp32 = an::cpu_kernel_active_isa() < an::CpuKernelIsa::avx512;
    const torch::Tensor x = torch::randn({2, 8, 9, 9}).contiguous(at::MemoryFormat::ChannelsLast);
    const torch::Tensor tokens = torch::randn({3, 19, 48});
    EXPECT_FALSE(an::bf16_layer_computes_in_fp32(x)) << "no autocast";
    conv->zero_grad();
    torch::Tensor xg = x.clone().requires_grad_(true), y, yg, yl;
    {
      arcforge::compat::AutocastGuard autocast(torch::kCPU, true, at::kBFloat16);
      EXPECT_EQ(an::bf16_layer_computes_in_fp32(x), fp32);
      y = an::conv2d_forward(conv, xg);
      yg = an::conv2d_forward(grouped, y);
      yl = an::linear_forward(linear, tokens);
    }
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(yg.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(yl.scalar_type(), torch::kBFloat16);
    if (!fp32) return;
    {
      torch::NoGradGuard no_grad;
      // (the fp32 layer as conv2d_forward runs it: on AVX2, in oneDNN's blocked layouts)
      EXPECT_TRUE(torch::equal(y, an::conv2d_forward(conv, x).to(torch::kBFloat16)));
      EXPECT_TRUE(torch::equal(yl, linear->forward(tokens).to(torch::kBFloat16)));
    }
    const torch::Tensor gy = torch::randn(y.sizes());
    y.backward(gy.to(torch::kBFloat16));
    const torch::Tensor xd = x.to(torch::kDouble).requires_grad_(true);
    const torch::Tensor wd = conv->weight.detach().to(torch::kDouble).requires_grad_(true);
    torch::nn::functional::conv2d(xd, wd, torch::nn::functional::Conv2dFuncOptions().padding(1))
        .backward(gy.to(torch::kBFloat16).to(torch::kDouble));
    EXPECT_EQ(conv->weight.grad().scalar_type(), torch::kFloat);
    EXPECT_LT(relative(conv->weight.grad(), wd.grad()), 1e-5) << "weight gradient";
    EXPECT_LT(relative(xg.grad(), xd.grad()), 1e-5) << "input gradient";
  });
}

// Only the gradients asked for are computed; the others stay undefined.
TEST(GroupedConvKernel, ComputesOnlyTheGradientsAskedFor) {
  const torch::Tensor x = torch::randn({2, 8, 6, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor w = torch::randn({8, 2, 3, 3}).requires_grad_(true);
  an::grouped_conv2d(x, w, an::GroupedConvSpec{{1, 1}, {1, 1}, 4}).sum().backward();
  EXPECT_FALSE(x.grad().defined());
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().sizes(), w.sizes());
}

// A NaN reaches every output it feeds, forward and backward: the trainer's non-finite guard relies
// on it.
TEST(GroupedConvKernel, NaNPropagates) {
  torch::Tensor x = torch::randn({1, 16, 5, 5});
  x[0][3][2][2] = std::numeric_limits<float>::quiet_NaN();
  x = x.contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
  const torch::Tensor w = torch::randn({16, 2, 3, 3}).requires_grad_(true);
  const torch::Tensor y = an::grouped_conv2d(x, w, an::GroupedConvSpec{{1, 1}, {1, 1}, 8});
  // Channel 3's pair is (2, 3): both read it, at the 3x3 neighbourhood of (2, 2).
  EXPECT_TRUE(torch::isnan(y[0][2][1][1]).item<bool>());
  EXPECT_TRUE(torch::isnan(y[0][3][3][3]).item<bool>());
  EXPECT_FALSE(torch::isnan(y[0][4]).any().item<bool>());
  y.sum().backward();
  // Output channels 2 and 3 read input channel 3 through their weights [.][1] and [.][0].
  EXPECT_TRUE(torch::isnan(w.grad()[2][1]).all().item<bool>());
  EXPECT_TRUE(torch::isnan(w.grad()[3][1]).all().item<bool>());
  EXPECT_FALSE(torch::isnan(w.grad()[2][0]).any().item<bool>());
  EXPECT_FALSE(torch::isnan(w.grad()[4]).any().item<bool>());
}

// What the kernel does not take goes to at::conv2d, with its result.
TEST(GroupedConvKernel, OtherInputsGoToATen) {
  const torch::Tensor w = torch::randn({8, 2, 3, 3});
  const an::GroupedConvSpec s{{1, 1}, {1, 1}, 4};
  const torch::Tensor nchw = torch::randn({2, 8, 6, 6});
  const torch::Tensor wide = torch::randn({2, 8, 6, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_FALSE(an::grouped_conv_uses_cpu_kernel(nchw, w, s)) << "NCHW";
  EXPECT_FALSE(an::grouped_conv_uses_cpu_kernel(wide, torch::randn({8, 4, 3, 3}), {{1, 1}, {1, 1}, 2}))
      << "four channels per group";
  EXPECT_FALSE(an::grouped_conv_uses_cpu_kernel(wide.to(torch::kDouble), w.to(torch::kDouble), s)) << "double";
  EXPECT_TRUE(torch::equal(an::grouped_conv2d(nchw, w, s), at::conv2d(nchw, w, {}, 1, 1, 1, 4)));
}

// Under bf16 autocast, as at::conv2d: x and the float weight are cast to bf16, the output is bf16,
// and the weight's gradient reaches the float parameter as float.
TEST(GroupedConvKernel, AutocastCastsLikeATen) {
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({2, 16, 8, 8}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor w = torch::randn({16, 2, 3, 3});
  const torch::Tensor gy = torch::randn({2, 16, 8, 8});
  const an::GroupedConvSpec s{{1, 1}, {1, 1}, 8};
  auto run = [&](bool ours) {
    const torch::Tensor wp = w.clone().requires_grad_(true);
    torch::Tensor y;
    {
      arcforge::compat::AutocastGuard autocast(torch::kCPU, true, torch::kBFloat16);
      y = ours ? an::grouped_conv2d(x, wp, s) : at::conv2d(x, wp, {}, 1, 1, 1, 8);
    }
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    y.backward(gy.to(y.scalar_type()));
    EXPECT_EQ(wp.grad().scalar_type(), torch::kFloat);
    return std::make_pair(y.detach().to(torch::kDouble), wp.grad().to(torch::kDouble));
  };
  const auto [y_ours, gw_ours] = run(true);
  const auto [y_aten, gw_aten] = run(false);
  EXPECT_LT(relative(y_ours, y_aten), 1.0 / 64);
  EXPECT_LT(relative(gw_ours, gw_aten), 1.0 / 64);
}

// MobileFaceNet on a channels-last batch takes the kernel for its grouped layers (conv2_dw and the
// depthwise ones); on an NCHW batch it does not. Against the same model run in double, training
// through the kernel is as accurate as through ATen. (Float runs differ from each other by up to
// 1e-3 in early layers: train-mode BatchNorm at batch 4 amplifies rounding.)
TEST(GroupedConvKernel, MobileFaceNetTrainsAsAccuratelyThroughIt) {
  torch::manual_seed(7);
  const torch::Tensor images = torch::randn({4, 3, 112, 112});
  // Not the sum of squares: the last BatchNorm1d makes that a constant, with gradients of noise.
  const torch::Tensor direction = torch::randn({4, 128});
  struct Run {
    torch::Tensor embeddings, gradients;  // all parameters' gradients, flattened, in double
    torch::Tensor grouped;               // the grouped layers' weight gradients only
  };
  auto run = [&](at::MemoryFormat format, torch::Dtype dtype) {
    torch::manual_seed(1);
    an::MobileFaceNet model("mbf", {1, 4, 6, 2}, 2, 128);
    model.to(dtype);
    model.train();
    const torch::Tensor out = model.forward(images.to(dtype).contiguous(format));
    (out * direction.to(dtype)).sum().backward();
    std::vector<torch::Tensor> all, grouped;
    for (const auto& p : model.parameters()) {
      all.push_back(p.grad().to(torch::kDouble).flatten());
      if (p.dim() == 4 && p.size(1) <= 2) grouped.push_back(all.back());
    }
    return Run{out.detach().to(torch::kDouble), torch::cat(all), torch::cat(grouped)};
  };
  const Run truth = run(at::MemoryFormat::Contiguous, torch::kDouble);
  const Run ours = run(at::MemoryFormat::ChannelsLast, torch::kFloat);
  const Run aten = run(at::MemoryFormat::Contiguous, torch::kFloat);
  auto error = [](const torch::Tensor& got, const torch::Tensor& want) {
    return ((got - want).norm() / want.norm()).item<double>();
  };
  EXPECT_LT(error(ours.embeddings, truth.embeddings), 1e-5);
  const double ours_all = error(ours.gradients, truth.gradients), aten_all = error(aten.gradients, truth.gradients);
  const double ours_grouped = error(ours.grouped, truth.grouped), aten_grouped = error(aten.grouped, truth.grouped);
  std::printf("[figures] mbf gradients' relative L2 error against double: arcforge %.2e (grouped layers %.2e), "
              "ATen %.2e (%.2e)\n", ours_all, ours_grouped, aten_all, aten_grouped);
  EXPECT_LT(ours_all, 2 * aten_all + 1e-6);
  EXPECT_LT(ours_grouped, 2 * aten_grouped + 1e-6);
}

}  // namespace

// Not a test: times the kernel against ATen on MobileFaceNet's grouped layers at batch 64
// (run with --gtest_also_run_disabled_tests).
TEST(GroupedConvKernel, DISABLED_TimingAgainstATen) {
  struct Layer {
    const char* name;
    int64_t channels, size, per_group, kernel, stride, padding, count;
  };
  const Layer layers[] = {{"conv2_dw 128@56 pairs", 128, 56, 2, 3, 1, 1, 1}, {"dw 128@56 s2", 128, 56, 1, 3, 2, 1, 1},
                          {"dw 128@28", 128, 28, 1, 3, 1, 1, 4},           {"dw 256@28 s2", 256, 28, 1, 3, 2, 1, 1},
                          {"dw 256@14", 256, 14, 1, 3, 1, 1, 6},           {"dw 512@14 s2", 512, 14, 1, 3, 2, 1, 1},
                          {"dw 256@7", 256, 7, 1, 3, 1, 1, 2},             {"gdc 512@7 7x7", 512, 7, 1, 7, 1, 0, 1}};
  for (torch::Dtype dtype : {torch::kFloat, torch::kBFloat16}) {
    double total[2] = {0, 0};
    for (const Layer& l : layers) {
      const torch::Tensor x = torch::randn({64, l.channels, l.size, l.size})
                                  .contiguous(at::MemoryFormat::ChannelsLast)
                                  .to(dtype)
                                  .requires_grad_(true);
      const torch::Tensor w = torch::randn({l.channels, l.per_group, l.kernel, l.kernel}).to(dtype).requires_grad_(true);
      const an::GroupedConvSpec s{{l.stride, l.stride}, {l.padding, l.padding}, l.channels / l.per_group};
      double ms[2];
      for (const bool ours : {false, true}) {
        auto run = [&] {
          const torch::Tensor y = ours ? an::grouped_conv2d(x, w, s)
                                       : at::conv2d(x, w, {}, l.stride, l.padding, 1, l.channels / l.per_group);
          y.backward(torch::ones_like(y));
        };
        ms[ours] = median_ms(run);
        total[ours] += ms[ours] * static_cast<double>(l.count);
      }
      std::printf("[figures] %-22s %s forward+backward: ATen %7.2f ms, arcforge %7.2f ms (%.2fx)\n", l.name,
                  dtype == torch::kFloat ? "fp32" : "bf16", ms[0], ms[1], ms[0] / ms[1]);
    }
    std::printf("[figures] all of mbf's grouped layers %s: ATen %.1f ms, arcforge %.1f ms per step (%.2fx)\n",
                dtype == torch::kFloat ? "fp32" : "bf16", total[0], total[1], total[0] / total[1]);
  }
}
