// arcforge's PReLU kernel (train/nn/prelu.cpp) against a double-precision recomputation of
// y = x > 0 ? x : w*x and its gradients, for every layout the backbones produce (NCHW,
// channels-last, [N,C]), a shared slope, a non-contiguous input, float and bf16.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "train/nn/prelu.hpp"
#include "train/nn/cpu_kernel_isa.hpp"

namespace {

namespace an = arcforge::nn;

struct Case {
  std::string name;
  std::vector<int64_t> shape;
  bool channels_last = false;
  bool shared_slope = false;
  bool transposed = false;  // x is a transposed (non-contiguous) view
  torch::Dtype dtype = torch::kFloat;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

class PReLUKernel : public ::testing::TestWithParam<Case> {};

void expect_matches_double_reference(const Case& c) {
  torch::manual_seed(5);
  torch::Tensor base = torch::randn(c.shape);
  base.view(-1).slice(0, 0, 7).zero_();  // exact zeros take the negative branch (x <= 0), as in ATen
  if (c.transposed) base = base.transpose(2, 3);
  if (c.channels_last) base = base.contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor x = base.to(c.dtype).requires_grad_(true);
  const int64_t channels = c.shape[1];
  const torch::Tensor w = (torch::rand({c.shared_slope ? 1 : channels}) - 0.5).requires_grad_(true);
  ASSERT_TRUE(an::prelu_uses_cpu_kernel(x, w));

  const torch::Tensor y = an::prelu(x, w);
  EXPECT_EQ(y.scalar_type(), c.dtype);
  EXPECT_EQ(y.sizes(), x.sizes());
  if (c.channels_last) {
    EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast));
  }
  const torch::Tensor gy = torch::randn(x.sizes()).to(c.dtype);
  y.backward(gy);
  ASSERT_TRUE(x.grad().defined());
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(x.grad().scalar_type(), c.dtype);
  EXPECT_EQ(w.grad().scalar_type(), torch::kFloat);
  EXPECT_EQ(w.grad().sizes(), w.sizes());

  // The reference, in double, from the same (already rounded) inputs.
  const torch::Tensor xd = x.detach().to(torch::kDouble), gd = gy.to(torch::kDouble);
  std::vector<int64_t> wshape(static_cast<size_t>(x.dim()), 1);
  wshape[1] = c.shared_slope ? 1 : channels;
  const torch::Tensor wd = w.detach().to(torch::kDouble).view(wshape);
  const torch::Tensor positive = xd > 0;
  const torch::Tensor y_ref = torch::where(positive, xd, wd * xd);
  const torch::Tensor gx_ref = torch::where(positive, gd, wd * gd);
  torch::Tensor gw_ref = torch::where(positive, torch::zeros_like(xd), xd * gd);
  std::vector<int64_t> reduce;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d != 1 || c.shared_slope) reduce.push_back(d);
  }
  gw_ref = gw_ref.sum(reduce).reshape(w.sizes());

  // float: one rounding of w*x; bf16: the result rounded to bf16 (8 bits of mantissa).
  const double rounding = c.dtype == torch::kFloat ? 1e-6 : 1.0 / 128;
  auto relative = [](const torch::Tensor& got, const torch::Tensor& want) {
    return (got.to(torch::kDouble) - want).abs().max().item<double>() / want.abs().max().item<double>();
  };
  EXPECT_LT(relative(y.detach(), y_ref), rounding) << "forward";
  EXPECT_LT(relative(x.grad(), gx_ref), rounding) << "input gradient";
  // The slope's gradient is summed in double from exact products of the inputs.
  EXPECT_LT(relative(w.grad(), gw_ref), 2e-7) << "slope gradient";  // one rounding to float
  if (c.dtype == torch::kBFloat16) {
    // Computed in float and rounded once to nearest even, as libtorch's own conversion: bit for bit.
    const torch::Tensor xf = x.detach().to(torch::kFloat), gf = gy.to(torch::kFloat);
    const torch::Tensor wf = w.detach().view(wshape);
    EXPECT_TRUE(torch::equal(y.detach(), torch::where(xf > 0, xf, wf * xf).to(torch::kBFloat16))) << "forward rounding";
    EXPECT_TRUE(torch::equal(x.grad(), torch::where(xf > 0, gf, wf * gf).to(torch::kBFloat16))) << "gradient rounding";
  }
}

// Every instruction set this CPU runs: the 16- and 8-lane loops with their tails, and the baseline.
TEST_P(PReLUKernel, MatchesDoubleReferenceForwardAndBackward) {
  const an::CpuKernelIsa best = an::cpu_kernel_best_isa();
  for (const an::CpuKernelIsa isa : {an::CpuKernelIsa::baseline, an::CpuKernelIsa::avx2, an::CpuKernelIsa::avx512,
                                     an::CpuKernelIsa::avx512_bf16}) {
    if (static_cast<int>(isa) > static_cast<int>(best)) {
      EXPECT_THROW(an::force_cpu_kernel_isa(isa), std::invalid_argument);
      continue;
    }
    SCOPED_TRACE("instruction set " + std::to_string(static_cast<int>(isa)));
    an::force_cpu_kernel_isa(isa);
    expect_matches_double_reference(GetParam());
  }
  an::clear_forced_cpu_kernel_isa();
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, PReLUKernel,
    ::testing::Values(Case{"nchw_float", {4, 6, 5, 7}}, Case{"channels_last_float", {4, 6, 5, 7}, true},
                      Case{"rows_float", {9, 6}}, Case{"shared_slope_float", {4, 6, 5, 7}, false, true},
                      Case{"transposed_float", {4, 6, 5, 7}, false, false, true},
                      Case{"nchw_bf16", {4, 6, 5, 7}, false, false, false, torch::kBFloat16},
                      Case{"channels_last_bf16", {4, 6, 5, 7}, true, false, false, torch::kBFloat16},
                      Case{"wide_channels_last_bf16", {2, 130, 9, 11}, true, false, false, torch::kBFloat16},
                      Case{"rows_bf16", {9, 6}, false, false, false, torch::kBFloat16},
                      // Wide rows and planes: whole vectors of 16 and of 8, then a tail.
                      Case{"wide_channels_last_float", {2, 130, 9, 11}, true},
                      Case{"wide_nchw_float", {2, 3, 17, 19}},
                      Case{"wide_nchw_bf16", {2, 3, 17, 19}, false, false, false, torch::kBFloat16},
                      Case{"wide_rows_float", {5, 70}}),
    [](const auto& info) { return info.param.name; });

// NaN stays NaN and infinities keep their sign (bf16's rounding must not carry a NaN into inf), on
// every instruction set, in whole vectors and in the tail.
TEST(PReLUKernel, NonFiniteInputsStayNonFinite) {
  const an::CpuKernelIsa best = an::cpu_kernel_best_isa();
  for (const torch::Dtype dtype : {torch::kFloat, torch::kBFloat16}) {
    for (int level = 0; level <= static_cast<int>(best); ++level) {
      an::force_cpu_kernel_isa(static_cast<an::CpuKernelIsa>(level));
      torch::Tensor x = torch::randn({1, 37});
      x[0][3] = std::numeric_limits<float>::quiet_NaN();
      x[0][20] = std::numeric_limits<float>::infinity();
      x[0][36] = -std::numeric_limits<float>::infinity();
      const torch::Tensor y = an::prelu(x.to(dtype), torch::full({37}, 0.25)).to(torch::kFloat);
      SCOPED_TRACE(std::string(c10::toString(dtype)) + " level " + std::to_string(level));
      EXPECT_TRUE(std::isnan(y[0][3].item<float>()));
      EXPECT_EQ(y[0][20].item<float>(), std::numeric_limits<float>::infinity());
      EXPECT_EQ(y[0][36].item<float>(), -std::numeric_limits<float>::infinity());
    }
  }
  an::clear_forced_cpu_kernel_isa();
}

// Dtypes the kernel does not take go to ATen, with the same result.
TEST(PReLUKernel, DoubleFallsBackToATen) {
  const torch::Tensor x = torch::randn({2, 3, 4, 4}, torch::kDouble);
  const torch::Tensor w = torch::rand({3}, torch::kDouble);
  EXPECT_FALSE(an::prelu_uses_cpu_kernel(x, w));
  EXPECT_TRUE(torch::equal(an::prelu(x, w), at::prelu(x, w)));
}

}  // namespace

// Not a test: times the kernel against ATen on MobileFaceNet's largest PReLU input
// (run with --gtest_also_run_disabled_tests).
TEST(PReLUKernel, DISABLED_TimingAgainstATen) {
  for (torch::Dtype dtype : {torch::kFloat, torch::kBFloat16}) {
    const torch::Tensor x =
        torch::randn({64, 64, 56, 56}).contiguous(at::MemoryFormat::ChannelsLast).to(dtype).requires_grad_(true);
    const torch::Tensor w = torch::rand({64}).requires_grad_(true);
    const torch::Tensor gy = torch::randn(x.sizes()).to(dtype).contiguous(at::MemoryFormat::ChannelsLast);
    for (const bool ours : {false, true}) {
      auto run = [&] {
        const torch::Tensor y = ours ? an::prelu(x, w) : at::prelu(x, w);
        y.backward(gy);
      };
      run();
      const auto start = std::chrono::steady_clock::now();
      for (int k = 0; k < 5; ++k) run();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / 5;
      std::printf("[figures] prelu %s %s forward+backward: %.2f ms\n", ours ? "arcforge" : "ATen",
                  dtype == torch::kFloat ? "fp32" : "bf16", ms);
    }
  }
}
