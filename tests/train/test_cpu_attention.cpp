// arcforge's CPU attention kernel (train/nn/cpu_attention.cpp) against the same attention in libtorch's
// double precision on the same (already rounded) qkv: output and qkv gradient, float and bf16, head
// sizes and token counts that fill whole vectors and ones that leave partial vectors and rows (vit_t
// trains on 129 of its 144 tokens), on every instruction set this CPU runs; then a ViT trained
// through it against the same ViT in double precision, and the timing against libtorch's path.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "train/compat/torch_compat.hpp"
#include "train/nn/backbone.hpp"
#include "train/nn/cpu_attention.hpp"

#include "every_isa.hpp"
#include "median_time.hpp"

namespace {

namespace an = arcforge::nn;

struct Case {
  std::string name;
  int64_t batch, tokens, heads, head_dim;
  torch::Dtype dtype = torch::kFloat;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

double relative(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kDouble) - want).abs().max().item<double>() / want.abs().max().item<double>();
}

// softmax(q k^T / sqrt(head_dim)) v per image and head, written out in double.
torch::Tensor double_attention(const torch::Tensor& qkv, int64_t heads) {
  const int64_t n = qkv.size(0), t = qkv.size(1), d = qkv.size(2) / 3, hd = d / heads;
  const torch::Tensor parts = qkv.reshape({n, t, 3, heads, hd}).permute({2, 0, 3, 1, 4});
  const torch::Tensor scores = parts[0].matmul(parts[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));
  const torch::Tensor e = (scores - std::get<0>(scores.max(-1, true))).exp();
  return (e / e.sum(-1, true)).matmul(parts[2]).transpose(1, 2).reshape({n, t, d});
}

class AttentionKernel : public ::testing::TestWithParam<Case> {};

void expect_matches_double_reference(const Case& c) {
  torch::manual_seed(21);
  const int64_t d = c.heads * c.head_dim;
  // Scores of a few units, as a trained ViT has: the softmax is neither flat nor one-hot.
  const torch::Tensor qkv = (torch::randn({c.batch, c.tokens, 3 * d}) * 1.5).to(c.dtype).requires_grad_(true);
  ASSERT_TRUE(an::attention_uses_cpu_kernel(qkv, c.heads));
  const torch::Tensor out = an::attention_from_qkv(qkv, c.heads);
  EXPECT_EQ(out.scalar_type(), torch::kFloat);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{c.batch, c.tokens, d}));
  const torch::Tensor grad_out = torch::randn_like(out);
  out.backward(grad_out);
  EXPECT_EQ(qkv.grad().scalar_type(), c.dtype);

  const torch::Tensor qkv_d = qkv.detach().to(torch::kDouble).requires_grad_(true);
  const torch::Tensor want = double_attention(qkv_d, c.heads);
  want.backward(grad_out.to(torch::kDouble));
  // The output is float from the same rounded inputs either way; the gradient is stored in qkv's dtype.
  EXPECT_LT(relative(out.detach(), want.detach()), 2e-6) << "output";
  EXPECT_LT(relative(qkv.grad(), qkv_d.grad()), c.dtype == torch::kFloat ? 1e-5 : 4e-3) << "qkv gradient";
}

TEST_P(AttentionKernel, MatchesDoubleReferenceOnEveryInstructionSet) {
  on_every_instruction_set([] { expect_matches_double_reference(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionKernel,
    ::testing::Values(Case{"vit_heads_144_tokens", 2, 144, 8, 32}, Case{"vit_masked_129_tokens", 2, 129, 8, 32},
                      Case{"vit_b_head_dim_64", 1, 144, 2, 64}, Case{"partial_vectors", 3, 21, 3, 24},
                      Case{"tiny", 2, 1, 1, 5}, Case{"odd_rows_odd_dim", 1, 37, 2, 9},
                      Case{"bf16_144_tokens", 2, 144, 8, 32, torch::kBFloat16},
                      Case{"bf16_partial", 2, 29, 4, 12, torch::kBFloat16}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(AttentionKernelRouting, TakesTheKernelOnlyWhereItApplies) {
  const torch::Tensor qkv = torch::randn({2, 5, 24});
  EXPECT_TRUE(an::attention_uses_cpu_kernel(qkv, 2));
  EXPECT_TRUE(an::attention_uses_cpu_kernel(qkv.to(torch::kBFloat16), 2));
  EXPECT_FALSE(an::attention_uses_cpu_kernel(qkv.to(torch::kDouble), 2));         // the reference's dtype
  EXPECT_FALSE(an::attention_uses_cpu_kernel(qkv.transpose(0, 1), 2));            // not contiguous
  EXPECT_FALSE(an::attention_uses_cpu_kernel(qkv, 5));                            // 24 is not 3 x 5 x k
  EXPECT_FALSE(an::attention_uses_cpu_kernel(torch::randn({2, 0, 24}), 2));      // empty
  // Elsewhere the same mathematics through libtorch: double in, double out.
  const torch::Tensor qkv_d = qkv.to(torch::kDouble);
  const torch::Tensor via_torch = an::attention_from_qkv(qkv_d, 2);
  EXPECT_EQ(via_torch.scalar_type(), torch::kDouble);
  EXPECT_LT(relative(an::attention_from_qkv(qkv, 2), double_attention(qkv_d, 2)), 2e-6);
  EXPECT_LT((via_torch - double_attention(qkv_d, 2)).abs().max().item<double>(), 1e-12);
}

// A NaN or an infinity in q, k or v must reach the output (the trainer's non-finite guard skips the
// step on it), on every instruction set: the kernel's max and exp must not swallow it.
TEST(AttentionKernelRouting, NonFiniteInputsReachTheOutput) {
  on_every_instruction_set([] {
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      for (const int64_t part : {0, 1, 2}) {  // q, k, v
        torch::Tensor qkv = torch::randn({2, 20, 3 * 16});
        qkv[1][7][part * 16 + 3] = bad;  // image 1, token 7, head 0
        const torch::Tensor out = an::attention_from_qkv(qkv, 2);
        SCOPED_TRACE("part " + std::to_string(part) + (std::isnan(bad) ? " NaN" : " inf"));
        EXPECT_FALSE(torch::isfinite(out[1]).all().item<bool>());
        EXPECT_TRUE(torch::isfinite(out[0]).all().item<bool>()) << "the other image stays finite";
      }
    }
  });
}

// vit_t in training mode (its 10% token masking and stochastic depth on) through the kernel against a
// double-precision copy, whose attention takes libtorch's path: same embeddings and gradients.
TEST(AttentionKernelInVit, VitTrainsAsThroughLibtorch) {
  torch::manual_seed(8);
  auto net = an::make_backbone({"vit_t", 64, 0.0});
  auto reference = an::make_backbone({"vit_t", 64, 0.0});
  {
    torch::NoGradGuard no_grad;
    const auto from = net->parameters();
    const auto to = reference->parameters();
    for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
  }
  reference->to(torch::kDouble);
  net->train();
  reference->train();
  const torch::Tensor images = torch::randn({3, 3, 112, 112});
  torch::manual_seed(9);  // the same masks and stochastic-depth draws in both
  const torch::Tensor got = net->forward(images);
  torch::manual_seed(9);
  const torch::Tensor want = reference->forward(images.to(torch::kDouble));
  EXPECT_LT(relative(got.detach(), want.detach()), 1e-4) << "embeddings";
  const torch::Tensor grad = torch::randn_like(got);
  got.backward(grad);
  want.backward(grad.to(torch::kDouble));
  const auto params = net->named_parameters();
  const auto ref_params = reference->named_parameters();
  for (const std::string name : {"blocks.0.attn.qkv.weight", "blocks.5.attn.qkv.weight", "blocks.11.attn.proj.weight",
                                 "patch_embed.proj.weight"}) {
    const torch::Tensor g = params[name].grad(), r = ref_params[name].grad();
    ASSERT_TRUE(g.defined() && r.defined()) << name;
    EXPECT_LT(((g.to(torch::kDouble) - r).norm() / r.norm()).item<double>(), 1e-4) << name;
  }
}

// Forward + backward of vit_t's attention at batch 64 (8 heads of 32, 144 tokens): the kernel
// against libtorch's matmul/softmax path (run with --gtest_also_run_disabled_tests).
TEST(AttentionKernelTiming, DISABLED_AgainstLibtorch) {
  torch::set_num_threads(2);
  for (const torch::Dtype dtype : {torch::kFloat, torch::kBFloat16}) {
    const torch::Tensor qkv = torch::randn({64, 144, 768}).to(dtype).requires_grad_(true);
    const torch::Tensor grad = torch::randn({64, 144, 256});
    auto kernel = [&] { an::attention_from_qkv(qkv, 8).backward(grad); };
    auto libtorch = [&] {
      const torch::Tensor parts = qkv.reshape({64, 144, 3, 8, 32}).permute({2, 0, 3, 1, 4});
      const torch::Tensor q = parts[0].to(torch::kFloat), k = parts[1].to(torch::kFloat), v = parts[2].to(torch::kFloat);
      const torch::Tensor a = (q.matmul(k.transpose(-2, -1)) * (1.0 / std::sqrt(32.0))).softmax(-1);
      a.matmul(v).transpose(1, 2).reshape({64, 144, 256}).backward(grad);
    };
    const double ours = median_ms(kernel, 5), theirs = median_ms(libtorch, 5);
    std::printf("attention %s forward+backward: arcforge %.1f ms, libtorch %.1f ms (%.2fx)\n",
                dtype == torch::kFloat ? "fp32" : "bf16", ours, theirs, theirs / ours);
  }
}

}  // namespace
