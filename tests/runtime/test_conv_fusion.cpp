// Conv with BatchNorm folded and activations / residual adds fused as post-ops, against a double
// reference of the unfused graph.
#include <gtest/gtest.h>

#include "arcforge/runtime/model.hpp"
#include "onnx_builder.hpp"
#include "reference_ops.hpp"

namespace arcforge::test {
namespace {

using runtime::Model;
using runtime::Tensor;

constexpr int64_t N = 2, C = 8, H = 9, W = 9;

struct Params {
  std::vector<float> w1, b1, gamma, beta, mean, var, wd, bd, w3, b3, slope;
};

Params make_params() {
  Params p;
  p.w1 = random_values(C * C * 9, 1, -0.3f, 0.3f);
  p.b1 = random_values(C, 2);
  p.gamma = random_values(C, 3, 0.5f, 1.5f);
  p.beta = random_values(C, 4);
  p.mean = random_values(C, 5);
  p.var = random_values(C, 6, 0.2f, 2.0f);
  p.wd = random_values(C * 9, 7, -0.5f, 0.5f);
  p.bd = random_values(C, 8);
  p.w3 = random_values(C * C, 9, -0.4f, 0.4f);
  p.b3 = random_values(C, 10);
  p.slope = random_values(C, 11, 0.0f, 0.5f);
  return p;
}

// x -> Conv3x3 -> BN -> act -> depthwise Conv3x3 -> act -> Conv1x1 -> Add(x)
// act is "clip" (ReLU6 with min/max inputs), "prelu" (per-channel slope [C,1,1]) or "relu".
std::string build(const Params& p, const std::string& act, const std::string& path) {
  OnnxBuilder m(13);
  m.input("x", {-1, C, H, W}).output("y");
  m.initializer("w1", {C, C, 3, 3}, p.w1).initializer("b1", {C}, p.b1);
  m.initializer("gamma", {C}, p.gamma).initializer("beta", {C}, p.beta);
  m.initializer("mean", {C}, p.mean).initializer("var", {C}, p.var);
  m.initializer("wd", {C, 1, 3, 3}, p.wd).initializer("bd", {C}, p.bd);
  m.initializer("w3", {C, C, 1, 1}, p.w3).initializer("b3", {C}, p.b3);
  m.initializer("lo", {}, {0.0f}).initializer("hi", {}, {6.0f}).initializer("slope", {C, 1, 1}, p.slope);
  auto activation = [&](const std::string& in, const std::string& out) {
    if (act == "clip") m.node("Clip", {in, "lo", "hi"}, {out});
    else if (act == "prelu") m.node("PRelu", {in, "slope"}, {out});
    else m.node("Relu", {in}, {out});
  };
  auto& c1 = m.node("Conv", {"x", "w1", "b1"}, {"c1"}, "conv1");
  OnnxBuilder::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  auto& bn = m.node("BatchNormalization", {"c1", "gamma", "beta", "mean", "var"}, {"n1"});
  OnnxBuilder::attr(bn, "epsilon", 1e-3f);
  activation("n1", "a1");
  auto& c2 = m.node("Conv", {"a1", "wd", "bd"}, {"c2"}, "dwconv");
  OnnxBuilder::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  OnnxBuilder::attr(c2, "group", int64_t{C});
  activation("c2", "a2");
  m.node("Conv", {"a2", "w3", "b3"}, {"c3"}, "conv3");
  m.node("Add", {"x", "c3"}, {"y"});
  return m.save(path);
}

ref::Vec reference(const Params& p, const std::string& act, const ref::Vec& x) {
  auto apply = [&](ref::Vec& v) {
    for (std::size_t k = 0; k < v.size(); ++k) {
      const int64_t c = static_cast<int64_t>(k / (H * W)) % C;
      if (act == "clip") v[k] = std::clamp(v[k], 0.0, 6.0);
      else if (act == "prelu") v[k] = v[k] >= 0 ? v[k] : v[k] * p.slope[c];
      else v[k] = std::max(v[k], 0.0);
    }
  };
  int64_t oh, ow;
  ref::Vec y = ref::conv2d(x, N, C, H, W, ref::to_double(p.w1), C, 3, 3, ref::to_double(p.b1), 1, 1, 1, 1, 1, 1, 1, oh, ow);
  for (std::size_t k = 0; k < y.size(); ++k) {
    const int64_t c = static_cast<int64_t>(k / (H * W)) % C;
    y[k] = (y[k] - p.mean[c]) / std::sqrt(static_cast<double>(p.var[c]) + 1e-3) * p.gamma[c] + p.beta[c];
  }
  apply(y);
  y = ref::conv2d(y, N, C, H, W, ref::to_double(p.wd), C, 3, 3, ref::to_double(p.bd), 1, 1, 1, 1, 1, C, 1, oh, ow);
  apply(y);
  y = ref::conv2d(y, N, C, H, W, ref::to_double(p.w3), C, 1, 1, ref::to_double(p.b3), 1, 0, 0, 0, 0, 1, 1, oh, ow);
  for (std::size_t k = 0; k < y.size(); ++k) y[k] += x[k];
  return y;
}

class ConvFusion : public ::testing::TestWithParam<std::string> {};

TEST_P(ConvFusion, MatchesUnfusedDoubleReference) {
  const std::string act = GetParam();
  TempDir dir;
  const Params p = make_params();
  const Model model = Model::load(build(p, act, dir.file("m.onnx")), {.threads = 2});
  // BN folded, both activations and the residual add fused: three convolutions remain.
  EXPECT_EQ(model.optimized_node_count(), 3u);
  Tensor x{{N, C, H, W}, random_values(N * C * H * W, 42, -2.0f, 2.0f)};
  const auto y = model.run({x});
  ASSERT_EQ(y.size(), 1u);
  EXPECT_EQ(y[0].shape, (std::vector<int64_t>{N, C, H, W}));
  const ref::Vec want = reference(p, act, ref::to_double(x.data));
  EXPECT_LE(ref::max_abs_diff(y[0].data, want), 1e-4 * ref::max_abs(want));
  // The input is also read by the residual add: it must not have been overwritten in place.
  Tensor x2 = x;
  const auto y2 = model.run({x2});
  EXPECT_EQ(x2.data, x.data);
  EXPECT_EQ(y2[0].data, y[0].data);
}

INSTANTIATE_TEST_SUITE_P(Activations, ConvFusion, ::testing::Values("clip", "prelu", "relu"));

}  // namespace
}  // namespace arcforge::test
