// Dense convolutions on oneDNN's blocked layouts (train/nn/blocked_conv.cpp) against libtorch's
// convolution and its autograd run in double precision on the same inputs: r50's 3x3 shapes scaled
// down, strides 1 and 2 on odd sizes, a rectangular kernel with uneven padding, channel counts that
// are not a block, NCHW as well as channels-last tensors; then which convolutions conv2d_forward
// sends there, and an IResNet trained through it against the same model on libtorch's convolutions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

#include "backbone_helpers.hpp"
#include "median_time.hpp"
#include "train/compat/torch_compat.hpp"
#include "train/nn/blocked_conv.hpp"
#include "train/nn/cpu_conv.hpp"
#include "train/nn/cpu_kernel_isa.hpp"

namespace {

namespace an = arcforge::nn;

#define SKIP_WITHOUT_ONEDNN()                                                                              \
  if (!an::blocked_conv_available()) GTEST_SKIP() << "SKIPPED: this build has no oneDNN (ARCFORGE_DEPLOY=OFF), " \
                                                     "so no blocked convolutions"

double relative(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kDouble) - want).abs().max().item<double>() / want.abs().max().item<double>();
}

// Forces the AVX2 level, under which conv2d_forward routes dense convolutions here; every CPU that
// runs arcforge's AVX2 kernels can be forced to it.
class ForcedAvx2 {
 public:
  ForcedAvx2() : available_(an::cpu_kernel_best_isa() >= an::CpuKernelIsa::avx2) {
    if (available_) an::force_cpu_kernel_isa(an::CpuKernelIsa::avx2);
  }
  ~ForcedAvx2() { an::clear_forced_cpu_kernel_isa(); }
  bool available() const { return available_; }

 private:
  bool available_;
};

struct Case {
  std::string name;
  std::vector<int64_t> x_shape;  // [N, C, H, W]
  int64_t out_channels = 16;
  std::array<int64_t, 2> kernel{3, 3};
  an::GroupedConvSpec spec;
  at::MemoryFormat format = at::MemoryFormat::ChannelsLast;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

class BlockedConv : public ::testing::TestWithParam<Case> {};

TEST_P(BlockedConv, MatchesDoubleReference) {
  SKIP_WITHOUT_ONEDNN();
  const Case& c = GetParam();
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn(c.x_shape).contiguous(c.format).requires_grad_(true);
  const torch::Tensor w = torch::randn({c.out_channels, c.x_shape[1], c.kernel[0], c.kernel[1]})
                              .contiguous(c.format)
                              .requires_grad_(true);
  const torch::Tensor y = an::blocked_conv2d(x, w, c.spec);
  EXPECT_TRUE(y.is_contiguous(c.format)) << "the output keeps the input's memory format";
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_NE(y.grad_fn()->name().find("BlockedConv"), std::string::npos) << y.grad_fn()->name();
  const torch::Tensor gy = torch::randn(y.sizes());
  y.backward(gy);

  const torch::Tensor xd = x.detach().to(torch::kDouble).requires_grad_(true);
  const torch::Tensor wd = w.detach().to(torch::kDouble).requires_grad_(true);
  const torch::Tensor y_ref = at::conv2d(xd, wd, {}, {c.spec.stride[0], c.spec.stride[1]},
                                         {c.spec.padding[0], c.spec.padding[1]});
  ASSERT_EQ(y.sizes(), y_ref.sizes());
  y_ref.backward(gy.to(torch::kDouble));
  // Sums of up to a few hundred float products.
  EXPECT_LT(relative(y.detach(), y_ref.detach()), 1e-5) << "forward";
  EXPECT_LT(relative(x.grad(), xd.grad()), 1e-5) << "input gradient";
  EXPECT_LT(relative(w.grad(), wd.grad()), 1e-5) << "weight gradient";
  EXPECT_TRUE(x.grad().is_contiguous(c.format));
  EXPECT_EQ(w.grad().strides(), w.strides()) << "the weight's gradient has the weight's layout";
}

// Stride and padding, groups 1.
an::GroupedConvSpec spec(std::array<int64_t, 2> stride, std::array<int64_t, 2> padding) { return {stride, padding, 1}; }

INSTANTIATE_TEST_SUITE_P(
    Shapes, BlockedConv,
    ::testing::Values(Case{"r50_3x3", {2, 16, 15, 13}, 16, {3, 3}, spec({1, 1}, {1, 1})},
                      Case{"r50_3x3_stride2_odd", {2, 16, 15, 13}, 24, {3, 3}, spec({2, 2}, {1, 1})},
                      Case{"widening_3x3", {3, 8, 14, 14}, 32, {3, 3}, spec({1, 1}, {1, 1})},
                      Case{"rectangular", {2, 16, 9, 12}, 16, {3, 5}, spec({1, 2}, {0, 2})},
                      Case{"pointwise_stride2", {2, 16, 15, 15}, 24, {1, 1}, spec({2, 2}, {0, 0})},
                      Case{"partial_blocks", {2, 3, 11, 11}, 10, {3, 3}, spec({1, 1}, {1, 1})},
                      Case{"nchw", {2, 16, 15, 13}, 16, {3, 3}, spec({2, 2}, {1, 1}), at::MemoryFormat::Contiguous}),
    [](const auto& info) { return info.param.name; });

// Only the gradients asked for are computed; the others stay undefined.
TEST(BlockedConvGradients, ComputesOnlyTheGradientsAskedFor) {
  SKIP_WITHOUT_ONEDNN();
  const torch::Tensor x = torch::randn({2, 8, 9, 9}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor w = torch::randn({8, 8, 3, 3}).requires_grad_(true);
  an::blocked_conv2d(x, w, spec({1, 1}, {1, 1})).sum().backward();
  EXPECT_FALSE(x.grad().defined());
  ASSERT_TRUE(w.grad().defined());
  const torch::Tensor x2 = x.clone().requires_grad_(true);
  an::blocked_conv2d(x2, w.detach(), spec({1, 1}, {1, 1})).sum().backward();
  EXPECT_TRUE(x2.grad().defined());
}

// What does not fit is refused by name rather than computed wrongly.
TEST(BlockedConvGradients, RefusesWhatItCannotCompute) {
  SKIP_WITHOUT_ONEDNN();
  const torch::Tensor x = torch::randn({2, 8, 9, 9});
  EXPECT_THROW(an::blocked_conv2d(x.to(torch::kDouble), torch::randn({8, 8, 3, 3}, torch::kDouble), spec({1, 1}, {1, 1})),
               std::invalid_argument);
  EXPECT_THROW(an::blocked_conv2d(x, torch::randn({8, 4, 3, 3}), spec({1, 1}, {1, 1})), std::invalid_argument);
  EXPECT_THROW(an::blocked_conv2d(x, torch::randn({8, 8, 11, 11}), spec({1, 1}, {0, 0})), std::invalid_argument);
  EXPECT_THROW(an::blocked_conv2d(x, torch::randn({8, 8, 10, 10}), spec({2, 2}, {0, 0})), std::invalid_argument)
      << "a kernel one pixel wider than the input, at stride 2";
  EXPECT_EQ(an::blocked_conv2d(x, torch::randn({8, 8, 9, 9}), spec({2, 2}, {0, 0})).sizes(),
            (std::vector<int64_t>{2, 8, 1, 1})) << "a kernel exactly as wide";
}

// Which dense convolutions go blocked: float channels-last ones with whole blocks of channels and a
// kernel wider than 1x1, and only at the AVX2 level.
TEST(BlockedConvRouting, OnlyWhereTheBlockedKernelsWin) {
  SKIP_WITHOUT_ONEDNN();
  ForcedAvx2 avx2;
  if (!avx2.available()) GTEST_SKIP() << "SKIPPED: this CPU has no AVX2";
  const auto cl = [](std::vector<int64_t> shape) {
    return torch::randn(shape).contiguous(at::MemoryFormat::ChannelsLast);
  };
  const torch::Tensor w = torch::randn({16, 16, 3, 3});
  const an::GroupedConvSpec same = spec({1, 1}, {1, 1}), halve = spec({2, 2}, {1, 1});
  EXPECT_TRUE(an::dense_conv_runs_blocked(cl({2, 16, 14, 14}), w, same));
  EXPECT_TRUE(an::dense_conv_runs_blocked(cl({2, 16, 13, 15}), w, halve));
  EXPECT_TRUE(an::dense_conv_runs_blocked(cl({2, 16, 7, 7}), torch::randn({32, 16, 3, 5}), same));
  EXPECT_FALSE(an::dense_conv_runs_blocked(cl({2, 16, 28, 28}), torch::randn({16, 16, 1, 1}), same)) << "1x1";
  EXPECT_FALSE(an::dense_conv_runs_blocked(cl({2, 12, 28, 28}), torch::randn({16, 12, 3, 3}), same)) << "12 in";
  EXPECT_FALSE(an::dense_conv_runs_blocked(cl({2, 3, 28, 28}), torch::randn({16, 3, 3, 3}), same)) << "the RGB stem";
  EXPECT_FALSE(an::dense_conv_runs_blocked(torch::randn({2, 16, 28, 28}), w, same)) << "NCHW";
  EXPECT_FALSE(an::dense_conv_runs_blocked(cl({2, 16, 28, 28}).to(torch::kBFloat16), w.to(torch::kBFloat16), same));
  an::GroupedConvSpec grouped = same;
  grouped.groups = 2;
  EXPECT_FALSE(an::dense_conv_runs_blocked(cl({2, 16, 28, 28}), torch::randn({16, 8, 3, 3}), grouped));
  for (const an::CpuKernelIsa other : {an::CpuKernelIsa::baseline, an::CpuKernelIsa::avx512}) {
    if (other > an::cpu_kernel_best_isa()) continue;
    an::force_cpu_kernel_isa(other);
    EXPECT_FALSE(an::dense_conv_runs_blocked(cl({2, 16, 28, 28}), w, same)) << "level " << static_cast<int>(other);
  }
}

// conv2d_forward takes the blocked path for a Conv2d module that fits, in fp32 and (computing in
// fp32, as below AVX-512 it does) under bf16 autocast; the module's own forward gives the same.
TEST(BlockedConvRouting, ModulesTakeItInFp32AndUnderBf16Autocast) {
  SKIP_WITHOUT_ONEDNN();
  ForcedAvx2 avx2;
  if (!avx2.available()) GTEST_SKIP() << "SKIPPED: this CPU has no AVX2";
  torch::manual_seed(21);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(16, 24, 3).padding(1).bias(false));
  const torch::Tensor x = torch::randn({2, 16, 14, 14}).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
  const torch::Tensor y = an::conv2d_forward(conv, x);
  EXPECT_NE(y.grad_fn()->name().find("BlockedConv"), std::string::npos) << y.grad_fn()->name();
  EXPECT_LT(relative(y.detach(), conv->forward(x).detach().to(torch::kDouble)), 1e-5);
  torch::Tensor y16;
  {
    arcforge::compat::AutocastGuard autocast(torch::kCPU, true, at::kBFloat16);
    y16 = an::conv2d_forward(conv, x);
  }
  EXPECT_EQ(y16.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(y16, y.detach().to(torch::kBFloat16))) << "fp32 through the same path, then rounded";
  // The bf16 output is the cast of the blocked convolution's.
  const auto& edges = y16.grad_fn()->next_edges();
  ASSERT_FALSE(edges.empty());
  EXPECT_NE(edges[0].function->name().find("BlockedConv"), std::string::npos) << edges[0].function->name();
}

// An IResNet trained through the blocked path (forced AVX2) and the same model on libtorch's
// convolutions (the baseline level, no blocked path), both against the model run in double: the
// blocked path is as accurate. Train-mode BatchNorm at batch 2 amplifies rounding, so one batch's
// gradient error swings by 10x with the data for either path (on an AMD EPYC Zen 4, seeds 1 to 4:
// blocked 5.7e-5 to 3.7e-4, libtorch 1.2e-4 to 5.5e-4, each ahead on some seed); the gradients are
// compared summed over four batches, which a systematic loss of accuracy would still fail.
TEST(BlockedConvRouting, IResNetTrainsAsAccuratelyAsThroughLibtorch) {
  SKIP_WITHOUT_ONEDNN();
  if (an::cpu_kernel_best_isa() < an::CpuKernelIsa::avx2) GTEST_SKIP() << "SKIPPED: this CPU has no AVX2";
  auto error = [](const torch::Tensor& got, const torch::Tensor& want) {
    return ((got - want).norm() / want.norm()).item<double>();
  };
  double blocked_sum = 0, torch_sum = 0;
  for (const int seed : {1, 2, 3, 4}) {
    torch::manual_seed(seed);
    const torch::Tensor images = torch::randn({2, 3, 112, 112});
    const torch::Tensor direction = torch::randn({2, 64});
    auto run = [&](an::CpuKernelIsa isa, torch::Dtype dtype) {
      an::force_cpu_kernel_isa(isa);
      torch::manual_seed(1);
      auto model = arcforge::test::build_backbone("r18", 64);
      model->to(dtype);
      for (auto& p : model->parameters())  // as the trainer does
        if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
      model->train();
      const torch::Tensor out = model->forward(images.to(dtype).contiguous(at::MemoryFormat::ChannelsLast));
      (out * direction.to(dtype)).sum().backward();
      std::vector<torch::Tensor> grads;
      for (const auto& p : model->parameters()) grads.push_back(p.grad().flatten());
      an::clear_forced_cpu_kernel_isa();
      return std::make_pair(out.detach().to(torch::kDouble), torch::cat(grads).to(torch::kDouble));
    };
    const auto [truth_out, truth_grads] = run(an::CpuKernelIsa::baseline, torch::kDouble);
    const auto [blocked_out, blocked_grads] = run(an::CpuKernelIsa::avx2, torch::kFloat);
    const auto [torch_out, torch_grads] = run(an::CpuKernelIsa::baseline, torch::kFloat);
    const double blocked_grad = error(blocked_grads, truth_grads), torch_grad = error(torch_grads, truth_grads);
    std::printf("[figures] r18, seed %d, against double: embeddings blocked %.2e, libtorch %.2e; gradients blocked "
                "%.2e, libtorch %.2e (relative L2)\n", seed, error(blocked_out, truth_out),
                error(torch_out, truth_out), blocked_grad, torch_grad);
    EXPECT_LT(error(blocked_out, truth_out), 1e-5) << "seed " << seed;
    blocked_sum += blocked_grad;
    torch_sum += torch_grad;
  }
  EXPECT_LT(blocked_sum, 2 * torch_sum + 1e-6);
}

}  // namespace

// Not a test: times the blocked path against libtorch's channels-last convolution on r50's 3x3
// shapes at batch 64, forward and backward, weighted by how often r50 has them (run with
// --gtest_also_run_disabled_tests).
TEST(BlockedConvRouting, DISABLED_TimingOnR50Shapes) {
  SKIP_WITHOUT_ONEDNN();
  struct Layer {
    int64_t in, out, size, stride, count;
  };
  const Layer layers[] = {{64, 64, 112, 1, 1},  {64, 64, 112, 2, 1},  {64, 64, 56, 1, 4},    {64, 128, 56, 1, 1},
                          {128, 128, 56, 2, 1}, {128, 128, 28, 1, 6}, {128, 256, 28, 1, 1},  {256, 256, 28, 2, 1},
                          {256, 256, 14, 1, 26}, {256, 512, 14, 1, 1}, {512, 512, 14, 2, 1}, {512, 512, 7, 1, 4}};
  double total[2] = {0, 0};
  for (const Layer& l : layers) {
    const torch::Tensor x =
        torch::randn({64, l.in, l.size, l.size}).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
    const torch::Tensor w =
        torch::randn({l.out, l.in, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
    const an::GroupedConvSpec s = spec({l.stride, l.stride}, {1, 1});
    double ms[2];
    for (const bool blocked : {false, true}) {
      auto run = [&] {
        const torch::Tensor y = blocked ? an::blocked_conv2d(x, w, s) : at::conv2d(x, w, {}, l.stride, 1);
        y.backward(torch::ones_like(y));
      };
      ms[blocked] = median_ms(run, 3);
      total[blocked] += ms[blocked] * static_cast<double>(l.count);
    }
    std::printf("[figures] %4lld->%-4lld @%-3lld s%lld x%-2lld forward+backward: libtorch %7.1f ms, blocked %7.1f ms "
                "(%.2fx)\n", static_cast<long long>(l.in), static_cast<long long>(l.out),
                static_cast<long long>(l.size), static_cast<long long>(l.stride), static_cast<long long>(l.count),
                ms[0], ms[1], ms[0] / ms[1]);
  }
  std::printf("[figures] r50's 3x3 convolutions per step: libtorch %.0f ms, blocked %.0f ms (%.2fx)\n", total[0],
              total[1], total[0] / total[1]);
}
