// arcforge's ReLU6 kernel (train/nn/relu6.cpp) against PyTorch's ReLU6, hardtanh(x, 0, 6), in double:
// values and gradients, float and bf16, on lengths that end in a partial vector, on every instruction
// set this CPU runs; the bounds themselves, NaN; and the timing against libtorch's clamp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "train/nn/relu6.hpp"

#include "every_isa.hpp"
#include "median_time.hpp"

namespace {

namespace an = arcforge::nn;

void expect_matches_hardtanh(torch::Dtype dtype, int64_t numel) {
  torch::manual_seed(31);
  // Values around both bounds, and the bounds exactly.
  torch::Tensor x = (torch::randn({numel}) * 4.0 + 3.0);
  x.index_put_({0}, 0.0);
  x.index_put_({1}, 6.0);
  x = x.to(dtype).requires_grad_(true);
  ASSERT_TRUE(an::relu6_uses_cpu_kernel(x));
  const torch::Tensor y = an::relu6(x);
  EXPECT_EQ(y.scalar_type(), dtype);
  const torch::Tensor gy = torch::randn({numel}).to(dtype);
  y.backward(gy);

  const torch::Tensor xd = x.detach().to(torch::kDouble).requires_grad_(true);
  const torch::Tensor want = torch::hardtanh(xd, 0.0, 6.0);
  want.backward(gy.to(torch::kDouble));
  // Both are exact: a clamp and a select, nothing rounded.
  EXPECT_TRUE(torch::equal(y.detach().to(torch::kDouble), want.detach()));
  EXPECT_TRUE(torch::equal(x.grad().to(torch::kDouble), xd.grad()));
  EXPECT_EQ(x.grad()[0].item<double>(), 0.0);  // at 0 and at 6 nothing passes, as in hardtanh
  EXPECT_EQ(x.grad()[1].item<double>(), 0.0);
}

TEST(ReLU6Kernel, MatchesHardtanhOnEveryInstructionSet) {
  on_every_instruction_set([] {
    for (const torch::Dtype dtype : {torch::kFloat, torch::kBFloat16})
      for (const int64_t numel : {int64_t{2}, int64_t{37}, int64_t{100003}}) expect_matches_hardtanh(dtype, numel);
  });
}

TEST(ReLU6Kernel, KeepsNaNAndTakesOtherInputsToHardtanh) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const torch::Tensor y = an::relu6(torch::tensor({nan, -1.0f, 7.0f, 2.5f}));
  EXPECT_TRUE(std::isnan(y[0].item<float>()));
  EXPECT_EQ(y[1].item<float>(), 0.0f);
  EXPECT_EQ(y[2].item<float>(), 6.0f);
  EXPECT_EQ(y[3].item<float>(), 2.5f);
  EXPECT_FALSE(an::relu6_uses_cpu_kernel(torch::zeros({3}, torch::kDouble)));
  EXPECT_FALSE(an::relu6_uses_cpu_kernel(torch::zeros({0})));
  const torch::Tensor xd = torch::tensor({-1.0, 3.0, 9.0}, torch::kDouble);
  EXPECT_TRUE(torch::equal(an::relu6(xd), torch::tensor({0.0, 3.0, 6.0}, torch::kDouble)));
  // A non-contiguous view: the result is laid out densely, the values are the view's.
  const torch::Tensor m = torch::randn({4, 6}) * 5;
  EXPECT_TRUE(torch::equal(an::relu6(m.t()), torch::hardtanh(m.t(), 0.0, 6.0)));
}

// vit_t's MLP hidden layer at batch 64 ([64, 144, 1024]), forward + backward: the kernel against
// libtorch's clamp (run with --gtest_also_run_disabled_tests).
TEST(ReLU6Timing, DISABLED_AgainstLibtorch) {
  torch::set_num_threads(2);
  for (const torch::Dtype dtype : {torch::kFloat, torch::kBFloat16}) {
    const torch::Tensor x = (torch::randn({64, 144, 1024}) * 4).to(dtype).requires_grad_(true);
    const torch::Tensor gy = torch::randn({64, 144, 1024}).to(dtype);
    const double ours = median_ms([&] { an::relu6(x).backward(gy); }, 5);
    const double theirs = median_ms([&] { torch::clamp(x, 0.0, 6.0).backward(gy); }, 5);
    std::printf("relu6 %s forward+backward: arcforge %.1f ms, libtorch clamp %.1f ms (%.2fx)\n",
                dtype == torch::kFloat ? "fp32" : "bf16", ours, theirs, theirs / ours);
  }
}

}  // namespace
