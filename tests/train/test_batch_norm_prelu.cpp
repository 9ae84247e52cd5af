// arcforge's fused BatchNorm2d + PReLU training kernel (train/nn/batch_norm_prelu.cpp) against a
// double-precision recomputation of prelu(batch_norm(x)) and its autograd gradients, with the running
// statistics ATen keeps; channel counts ending in a partial vector, a shared slope, channels whose
// mean dwarfs their spread, BatchNorm alone, float and bf16, on every instruction set this CPU runs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "train/nn/batch_norm_prelu.hpp"
#include "train/nn/prelu.hpp"

#include "every_isa.hpp"
#include "median_time.hpp"

namespace {

namespace an = arcforge::nn;

struct Case {
  std::string name;
  std::vector<int64_t> shape;  // [N, C, H, W]
  torch::Dtype dtype = torch::kFloat;
  bool shared_slope = false;
  double offset = 0.0;  // added to x: a mean far larger than the spread
  double spread = 1.0;
  // Results have float's rounding of the mean relative to the spread, as ATen's (its saved mean
  // is a float too): 6e-8 * offset / spread.
  double float_tolerance = 1e-5;
  bool prelu = true;  // false: batch_norm2d(), the BatchNorm alone
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

double relative(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kDouble) - want).abs().max().item<double>() / want.abs().max().item<double>();
}

torch::nn::BatchNorm2d module_with_state(int64_t channels) {
  torch::nn::BatchNorm2d bn{torch::nn::BatchNorm2dOptions(channels)};
  torch::NoGradGuard no_grad;
  bn->weight.copy_(torch::rand({channels}) + 0.5);
  bn->bias.copy_(torch::randn({channels}) * 0.3);
  bn->running_mean.copy_(torch::randn({channels}));
  bn->running_var.copy_(torch::rand({channels}) + 0.5);
  bn->train();
  return bn;
}

void expect_matches_double_reference(const Case& c) {
  torch::manual_seed(21);
  const int64_t channels = c.shape[1];
  const torch::Tensor x = (torch::randn(c.shape) * c.spread + c.offset)
                              .contiguous(at::MemoryFormat::ChannelsLast)
                              .to(c.dtype)
                              .requires_grad_(true);
  torch::nn::BatchNorm2d bn = module_with_state(channels);
  const torch::Tensor slope =
      c.prelu ? (torch::rand({c.shared_slope ? 1 : channels}) - 0.3).requires_grad_(true) : torch::Tensor();
  const torch::Tensor running_mean = bn->running_mean.clone(), running_var = bn->running_var.clone();
  ASSERT_TRUE(an::batch_norm_prelu_uses_cpu_kernel(x, bn, slope));

  const torch::Tensor y = c.prelu ? an::batch_norm_prelu(x, bn, slope) : an::batch_norm2d(x, bn);
  EXPECT_EQ(y.scalar_type(), c.dtype);
  EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast));
  const torch::Tensor gy = torch::randn(c.shape).to(c.dtype);
  y.backward(gy);

  // The reference, in double from the same (already rounded) inputs, by autograd.
  const torch::Tensor xd = x.detach().to(torch::kDouble).contiguous().requires_grad_(true);
  const torch::Tensor gamma = bn->weight.detach().to(torch::kDouble).requires_grad_(true);
  const torch::Tensor beta = bn->bias.detach().to(torch::kDouble).requires_grad_(true);
  const torch::Tensor a =
      (c.prelu ? slope.detach().to(torch::kDouble) : torch::ones({channels}, torch::kDouble)).requires_grad_(true);
  const std::vector<int64_t> reduce{0, 2, 3};
  const torch::Tensor mean = xd.mean(reduce, true);
  const torch::Tensor var = (xd - mean).pow(2).mean(reduce, true);
  const torch::Tensor z = (xd - mean) / (var + bn->options.eps()).sqrt() * gamma.view({1, -1, 1, 1}) +
                          beta.view({1, -1, 1, 1});
  const torch::Tensor y_ref = c.prelu ? torch::where(z > 0, z, a.view({1, -1, 1, 1}) * z) : z;
  y_ref.backward(gy.to(torch::kDouble));

  const double n = static_cast<double>(x.numel() / channels), m = bn->options.momentum().value();
  const torch::Tensor mean_ref = mean.detach().flatten() * m + running_mean.to(torch::kDouble) * (1 - m);
  const torch::Tensor var_ref = var.detach().flatten() * (n / (n - 1)) * m + running_var.to(torch::kDouble) * (1 - m);

  // float: sums in float blocks then double, results rounded to float; bf16: y and the input
  // gradient rounded to 8 bits of mantissa.
  const double tolerance = c.dtype == torch::kFloat ? c.float_tolerance : 1.0 / 128;
  EXPECT_LT(relative(y.detach(), y_ref.detach()), tolerance) << "forward";
  EXPECT_LT(relative(x.grad(), xd.grad()), tolerance) << "input gradient";
  EXPECT_LT(relative(bn->weight.grad(), gamma.grad()), c.float_tolerance) << "BN weight gradient";
  EXPECT_LT(relative(bn->bias.grad(), beta.grad()), c.float_tolerance) << "BN bias gradient";
  if (c.prelu) {
    EXPECT_LT(relative(slope.grad(), a.grad()), c.float_tolerance) << "slope gradient";
  }
  EXPECT_LT(relative(bn->running_mean, mean_ref), 1e-6) << "running mean";
  EXPECT_LT(relative(bn->running_var, var_ref), 1e-5) << "running variance";
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
}

class BatchNormPReLUKernel : public ::testing::TestWithParam<Case> {};

TEST_P(BatchNormPReLUKernel, MatchesDoubleReferenceOnEveryInstructionSet) {
  on_every_instruction_set([] { expect_matches_double_reference(GetParam()); });
}

// Channels: 6 (the scalar tail only), 20 and 130 (whole vectors of 16 or 8, then a tail), 32.
// 4 x 9 x 11 pixels: several float blocks of 64 and parallel tasks.
INSTANTIATE_TEST_SUITE_P(
    Shapes, BatchNormPReLUKernel,
    ::testing::Values(Case{"narrow_float", {3, 6, 5, 7}}, Case{"tail_float", {4, 20, 9, 11}},
                      Case{"whole_vectors_float", {4, 32, 9, 11}}, Case{"wide_float", {2, 130, 9, 11}},
                      Case{"shared_slope_float", {4, 20, 9, 11}, torch::kFloat, true},
                      // Variance from plain sums of x and x^2 would lose all digits here.
                      Case{"large_mean_float", {4, 20, 9, 11}, torch::kFloat, false, 100.0, 0.1, 1e-4},
                      Case{"tail_bf16", {4, 20, 9, 11}, torch::kBFloat16},
                      Case{"wide_bf16", {2, 130, 9, 11}, torch::kBFloat16},
                      Case{"large_mean_bf16", {4, 32, 9, 11}, torch::kBFloat16, false, 50.0, 1.0, 1e-4},
                      // batch_norm2d(): no PReLU.
                      Case{"no_prelu_float", {4, 20, 9, 11}, torch::kFloat, false, 0.0, 1.0, 1e-5, false},
                      Case{"no_prelu_bf16", {2, 130, 9, 11}, torch::kBFloat16, false, 0.0, 1.0, 1e-5, false}),
    [](const auto& info) { return info.param.name; });

// What the kernel does not take goes through the modules, with their result.
TEST(BatchNormPReLUKernel, OtherInputsGoThroughTheModules) {
  torch::manual_seed(2);
  const torch::Tensor slope = torch::rand({8});
  const torch::Tensor nchw = torch::randn({2, 8, 5, 5});
  const torch::Tensor channels_last = nchw.contiguous(at::MemoryFormat::ChannelsLast);
  torch::nn::BatchNorm2d bn = module_with_state(8);
  EXPECT_FALSE(an::batch_norm_prelu_uses_cpu_kernel(nchw, bn, slope)) << "NCHW";
  EXPECT_FALSE(an::batch_norm_prelu_uses_cpu_kernel(channels_last.to(torch::kDouble), bn, slope)) << "double";
  EXPECT_FALSE(an::batch_norm_prelu_uses_cpu_kernel(torch::randn({1, 8, 1, 1}), bn, slope)) << "one value per channel";
  bn->eval();
  EXPECT_FALSE(an::batch_norm_prelu_uses_cpu_kernel(channels_last, bn, slope)) << "eval mode";
  EXPECT_TRUE(torch::allclose(an::batch_norm_prelu(channels_last, bn, slope), an::prelu(bn->forward(channels_last), slope)));
  EXPECT_TRUE(torch::equal(an::batch_norm2d(channels_last, bn), bn->forward(channels_last)));
}

// Training steps through the fused kernel and through the two modules keep the same running
// statistics, step count and outputs.
TEST(BatchNormPReLUKernel, RunningStatisticsFollowTheModules) {
  torch::manual_seed(4);
  torch::nn::BatchNorm2d fused = module_with_state(16), plain = module_with_state(16);
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < fused->buffers().size(); ++i) plain->buffers()[i].copy_(fused->buffers()[i]);
    for (size_t i = 0; i < fused->parameters().size(); ++i) plain->parameters()[i].copy_(fused->parameters()[i]);
  }
  const torch::Tensor slope = torch::full({16}, 0.25);
  for (int step = 0; step < 3; ++step) {
    const torch::Tensor x = (torch::randn({4, 16, 6, 6}) * 2 + 1).contiguous(at::MemoryFormat::ChannelsLast);
    const torch::Tensor y_fused = an::batch_norm_prelu(x, fused, slope);
    const torch::Tensor y_plain = an::prelu(plain->forward(x), slope);
    EXPECT_LT(relative(y_fused, y_plain.to(torch::kDouble)), 1e-5);
  }
  EXPECT_EQ(fused->num_batches_tracked.item<int64_t>(), 3);
  EXPECT_TRUE(torch::allclose(fused->running_mean, plain->running_mean, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(fused->running_var, plain->running_var, 1e-5, 1e-6));
}

}  // namespace

// Not a test: times the fused kernel against the two modules (libtorch's batch norm, then arcforge's
// PReLU kernel) on MobileFaceNet's ConvBlock outputs at batch 64 (run with
// --gtest_also_run_disabled_tests).
TEST(BatchNormPReLUKernel, DISABLED_TimingAgainstTheModules) {
  struct Layer {
    const char* name;
    int64_t channels, size, count;
  };
  const Layer layers[] = {{"128@56", 128, 56, 3}, {"128@28", 128, 28, 9}, {"256@28", 256, 28, 1},
                          {"256@14", 256, 14, 13}, {"512@14", 512, 14, 1}, {"256@7", 256, 7, 4}, {"512@7", 512, 7, 2}};
  for (torch::Dtype dtype : {torch::kFloat, torch::kBFloat16}) {
    double total[2] = {0, 0};
    for (const Layer& l : layers) {
      const torch::Tensor x = torch::randn({64, l.channels, l.size, l.size})
                                  .contiguous(at::MemoryFormat::ChannelsLast)
                                  .to(dtype)
                                  .requires_grad_(true);
      torch::nn::BatchNorm2d bn = module_with_state(l.channels);
      const torch::Tensor slope = torch::full({l.channels}, 0.25).requires_grad_(true);
      double ms[2];
      for (const bool fused : {false, true}) {
        auto run = [&] {
          const torch::Tensor y = fused ? an::batch_norm_prelu(x, bn, slope) : an::prelu(bn->forward(x), slope);
          y.backward(torch::ones_like(y));
        };
        ms[fused] = median_ms(run);
        total[fused] += ms[fused] * static_cast<double>(l.count);
      }
      std::printf("[figures] bn+prelu %-7s %s forward+backward: modules %7.2f ms, fused %7.2f ms (%.2fx)\n", l.name,
                  dtype == torch::kFloat ? "fp32" : "bf16", ms[0], ms[1], ms[0] / ms[1]);
    }
    std::printf("[figures] all of mbf's BN+PReLU pairs %s: modules %.1f ms, fused %.1f ms per step (%.2fx)\n",
                dtype == torch::kFloat ? "fp32" : "bf16", total[0], total[1], total[0] / total[1]);
  }
}
