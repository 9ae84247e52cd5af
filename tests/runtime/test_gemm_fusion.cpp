// Post-ops on Gemm and MatMul (a transformer's MLP, residual and attention scale): the optimiser
// fuses them, and the result equals a double-precision reference of the unfused graph.
#include <gtest/gtest.h>

#include <algorithm>

#include "arcforge/runtime/model.hpp"
#include "onnx_builder.hpp"
#include "parity_util.hpp"
#include "quant_util.hpp"
#include "reference_ops.hpp"

namespace arcforge::test {
namespace {

using runtime::Model;
using runtime::Tensor;

constexpr int64_t M = 6, K = 16, Hidden = 32;

// y[m][o] = sum_k x[m][k] * w[o][k] + b[o]  (Gemm with transB = 1)
ref::Vec linear(const ref::Vec& x, const std::vector<float>& w, const std::vector<float>& b, int64_t rows, int64_t in,
                int64_t out) {
  ref::Vec y(static_cast<std::size_t>(rows * out));
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t o = 0; o < out; ++o) {
      double s = b[o];
      for (int64_t k = 0; k < in; ++k) s += x[m * in + k] * static_cast<double>(w[o * in + k]);
      y[m * out + o] = s;
    }
  }
  return y;
}

// Two Gemms' seeded weights (fc1: K -> Hidden, fc2: Hidden -> K), as initializers w1, b1, w2, b2.
struct TwoLayers {
  std::vector<float> w1, b1, w2, b2;
  explicit TwoLayers(uint32_t seed)
      : w1(random_values(Hidden * K, seed, -0.5f, 0.5f)), b1(random_values(Hidden, seed + 1)),
        w2(random_values(K * Hidden, seed + 2, -0.5f, 0.5f)), b2(random_values(K, seed + 3)) {}
  void add_to(OnnxBuilder& m) const {
    m.initializer("w1", {Hidden, K}, w1).initializer("b1", {Hidden}, b1);
    m.initializer("w2", {K, Hidden}, w2).initializer("b2", {K}, b2);
  }
};

// x -> Gemm -> Clip(0, 6) -> Gemm -> Add(x): the MLP of a ViT block with its residual.
TEST(GemmFusion, MlpWithRelu6AndResidualMatchesDoubleReference) {
  TempDir dir;
  const TwoLayers p(1);
  const auto& [w1, b1, w2, b2] = p;
  OnnxBuilder m(13);
  m.input("x", {-1, K}).output("y");
  p.add_to(m);
  m.initializer("lo", {}, {0.0f}).initializer("hi", {}, {6.0f});
  OnnxBuilder::attr(m.node("Gemm", {"x", "w1", "b1"}, {"h"}, "fc1"), "transB", int64_t{1});
  m.node("Clip", {"h", "lo", "hi"}, {"a"});
  OnnxBuilder::attr(m.node("Gemm", {"a", "w2", "b2"}, {"g"}, "fc2"), "transB", int64_t{1});
  m.node("Add", {"x", "g"}, {"y"});
  const Model model = Model::load(m.save(dir.file("mlp.onnx")), {.threads = 2});
  EXPECT_EQ(model.optimized_node_count(), 2u) << "Clip and the residual Add are post-ops of the Gemms";

  const Tensor x{{M, K}, random_values(M * K, 5, -3.0f, 3.0f)};
  ref::Vec h = linear(ref::to_double(x.data), w1, b1, M, K, Hidden);
  for (double& v : h) v = std::clamp(v, 0.0, 6.0);
  ref::Vec want = linear(h, w2, b2, M, Hidden, K);
  for (std::size_t k = 0; k < want.size(); ++k) want[k] += x.data[k];
  Tensor input = x;
  const auto y = model.run({input});
  EXPECT_LE(ref::max_abs_diff(y.at(0).data, want), 1e-5 * ref::max_abs(want));
  EXPECT_EQ(input.data, x.data) << "the residual sum overwrote the graph input";
}

// PReLU after a Gemm stays a node of its own (its slope broadcast is a Conv's), and is still right.
TEST(GemmFusion, PreluAfterGemmIsNotFused) {
  TempDir dir;
  const auto w = random_values(Hidden * K, 6, -0.5f, 0.5f), slope = random_values(Hidden, 7, 0.0f, 0.5f);
  OnnxBuilder m(13);
  m.input("x", {-1, K}).output("y");
  m.initializer("w", {Hidden, K}, w).initializer("s", {Hidden}, slope);
  OnnxBuilder::attr(m.node("Gemm", {"x", "w"}, {"h"}), "transB", int64_t{1});
  m.node("PRelu", {"h", "s"}, {"y"});
  const Model model = Model::load(m.save(dir.file("prelu.onnx")), {.threads = 2});
  EXPECT_EQ(model.optimized_node_count(), 2u);
  const Tensor x{{M, K}, random_values(M * K, 8, -3.0f, 3.0f)};
  ref::Vec want = linear(ref::to_double(x.data), w, std::vector<float>(Hidden, 0.0f), M, K, Hidden);
  for (std::size_t k = 0; k < want.size(); ++k) {
    if (want[k] < 0) want[k] *= slope[k % Hidden];
  }
  EXPECT_LE(ref::max_abs_diff(model.run({x}).at(0).data, want), 1e-5 * ref::max_abs(want));
}

// Attention scores: MatMul of two run-time tensors, then a scalar Mul (constant on the left).
TEST(GemmFusion, MatMulScaleMatchesDoubleReference) {
  TempDir dir;
  constexpr int64_t B = 2, Heads = 3, T = 5, D = 4;
  OnnxBuilder m(13);
  m.input("q", {-1, Heads, T, D}).input("k", {-1, Heads, D, T}).output("y");
  m.initializer("scale", {1}, {0.5f});
  m.node("MatMul", {"q", "k"}, {"s"});
  m.node("Mul", {"scale", "s"}, {"y"});
  const Model model = Model::load(m.save(dir.file("scores.onnx")), {.threads = 2});
  EXPECT_EQ(model.optimized_node_count(), 1u) << "the scale is a post-op of the MatMul";
  const Tensor q{{B, Heads, T, D}, random_values(B * Heads * T * D, 9, -2.0f, 2.0f)};
  const Tensor k{{B, Heads, D, T}, random_values(B * Heads * D * T, 10, -2.0f, 2.0f)};
  ref::Vec want(static_cast<std::size_t>(B * Heads * T * T));
  for (int64_t bh = 0; bh < B * Heads; ++bh) {
    for (int64_t i = 0; i < T; ++i) {
      for (int64_t j = 0; j < T; ++j) {
        double s = 0;
        for (int64_t d = 0; d < D; ++d) s += static_cast<double>(q.data[(bh * T + i) * D + d]) * k.data[(bh * D + d) * T + j];
        want[(bh * T + i) * T + j] = 0.5 * s;
      }
    }
  }
  EXPECT_LE(ref::max_abs_diff(model.run({q, k}).at(0).data, want), 1e-5 * ref::max_abs(want));
}

// bf16: fc1's output, read only by fc2, is written in bf16 (what fc2 reads) instead of fp32 plus a
// conversion step. The result is the bf16 arithmetic written out: inputs, weights and the hidden
// layer rounded to bf16, products summed in higher precision.
TEST(GemmFusion, Bf16HiddenLayerIsWrittenInBf16) {
  REQUIRE_CPU_BF16();
  TempDir dir;
  const TwoLayers p(11);
  const auto& [w1, b1, w2, b2] = p;
  OnnxBuilder m(13);
  m.input("x", {-1, K}).output("y");
  p.add_to(m);
  OnnxBuilder::attr(m.node("Gemm", {"x", "w1", "b1"}, {"h"}, "fc1"), "transB", int64_t{1});
  m.node("Relu", {"h"}, {"a"});
  OnnxBuilder::attr(m.node("Gemm", {"a", "w2", "b2"}, {"y"}, "fc2"), "transB", int64_t{1});
  const Model model = Model::load(m.save(dir.file("mlp.onnx")), {.precision = runtime::Precision::bf16, .threads = 2});
  const Tensor x{{M, K}, random_values(M * K, 15, -3.0f, 3.0f)};
  std::vector<runtime::StepTiming> steps;
  const auto y = model.new_session().run({x}, steps);
  int fc2_steps = 0;
  for (const auto& step : steps) fc2_steps += step.node == "fc2";
  EXPECT_EQ(fc2_steps, 1) << "fc2 read a converted copy of fc1's output";

  auto rounded = [](const std::vector<float>& v) {
    std::vector<float> r(v.size());
    for (std::size_t k = 0; k < v.size(); ++k) r[k] = static_cast<float>(bf16_round(v[k]));
    return r;
  };
  ref::Vec h = linear(ref::to_double(rounded(x.data)), rounded(w1), b1, M, K, Hidden);
  for (double& v : h) v = bf16_round(std::max(v, 0.0));
  const ref::Vec want = linear(h, rounded(w2), b2, M, Hidden, K);
  EXPECT_LE(ref::max_abs_diff(y.at(0).data, want), 2e-3 * ref::max_abs(want));
}

}  // namespace
}  // namespace arcforge::test
