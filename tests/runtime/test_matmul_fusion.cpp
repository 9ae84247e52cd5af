// The optimiser's MatMul fusions: a MatMul with constant 2-D weights (PyTorch's Linear over
// tokens, [N,T,K] x [K,M]) takes the Add of a constant bias as its inner product's bias, and the
// ReLU6 Clip, scalar Mul and residual Add after it as post-ops, as a Gemm does. A bias that is not
// a scalar or a row of the output's width stays an Add; a residual addend that broadcasts runs
// after the product on the result viewed with its own dims. Each case matches ONNX Runtime running
// the nodes as written (graph optimizations disabled), at batch 1 and 3.
#include <gtest/gtest.h>

#include "parity_util.hpp"

namespace arcforge::test {
namespace {

using B = OnnxBuilder;
using runtime::Tensor;

constexpr int64_t T = 5, K = 12, H = 20;

struct MmCase {
  std::string name;
  std::size_t nodes_after_fusion;
  std::vector<int64_t> bias1_dims{H};  // fc1's bias: [H], a scalar {}, or [1, H] (not fused)
  bool tokens = true;                  // x is [N, T, K]; else [N, K]
  bool broadcast_residual = false;     // the residual addend is a [1, T, K] graph input
  bool scale = false;                  // fc2's output times 0.5 before the residual Add
};

std::ostream& operator<<(std::ostream& os, const MmCase& c) { return os << c.name; }

// y = x + fc2(ReLU6(fc1(x))) [* 0.5], each fc a MatMul by a constant and an Add of a constant bias.
std::string build(const MmCase& c, const std::string& dir) {
  OnnxBuilder m(13);
  const std::vector<int64_t> x_dims = c.tokens ? std::vector<int64_t>{-1, T, K} : std::vector<int64_t>{-1, K};
  m.input("x", x_dims).output("y");
  if (c.broadcast_residual) m.input("r", {1, T, K});
  int64_t bias1_size = 1;
  for (int64_t d : c.bias1_dims) bias1_size *= d;
  m.initializer("w1", {K, H}, random_values(K * H, 1, -0.3f, 0.3f))
      .initializer("b1", c.bias1_dims, random_values(static_cast<std::size_t>(bias1_size), 2))
      .initializer("w2", {H, K}, random_values(H * K, 3, -0.3f, 0.3f))
      .initializer("b2", {K}, random_values(K, 4))
      .initializer("zero", {}, {0.0f})
      .initializer("six", {}, {6.0f})
      .initializer("half", {}, {0.5f});
  m.node("MatMul", {"x", "w1"}, {"h"});
  m.node("Add", {"b1", "h"}, {"hb"});  // constant first, as torch writes a Linear's bias
  m.node("Clip", {"hb", "zero", "six"}, {"a"});
  m.node("MatMul", {"a", "w2"}, {"o"});
  m.node("Add", {"o", "b2"}, {"ob"});
  std::string branch = "ob";
  if (c.scale) {
    m.node("Mul", {"ob", "half"}, {"os"});
    branch = "os";
  }
  m.node("Add", {c.broadcast_residual ? "r" : "x", branch}, {"y"});
  return m.save(std::filesystem::path(dir) / (c.name + ".onnx"));
}

class MatMulFusion : public ::testing::TestWithParam<MmCase> {};

TEST_P(MatMulFusion, FusesBiasActivationAndResidualAndMatchesOnnxRuntime) {
  const MmCase& c = GetParam();
  TempDir dir;
  const std::string path = build(c, dir.path().string());
  const runtime::Model model = runtime::Model::load(path, {.threads = 2});
  EXPECT_EQ(model.optimized_node_count(), c.nodes_after_fusion);

  const std::string why = ort_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "SKIPPED: " << why;
  for (int64_t batch : {1, 3}) {
    std::vector<Tensor> inputs;
    const std::vector<int64_t> x_dims = c.tokens ? std::vector<int64_t>{batch, T, K} : std::vector<int64_t>{batch, K};
    inputs.push_back(Tensor{x_dims, random_values(static_cast<std::size_t>(batch * (c.tokens ? T : 1) * K), 7, -3.0f, 3.0f)});
    if (c.broadcast_residual) inputs.push_back(Tensor{{1, T, K}, random_values(T * K, 8)});
    const auto ref = run_onnxruntime(path, inputs, 1, "disabled");
    const auto ours = model.run(inputs);
    ASSERT_EQ(ours.at(0).shape, ref.at(0).shape);
    const Difference d = compare(ours[0], ref[0]);
    EXPECT_GT(d.scale, 0.0);
    EXPECT_LE(d.max_abs, 1e-5 * d.scale) << "batch " << batch;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Patterns, MatMulFusion,
    ::testing::Values(
        // fc1 with its bias and ReLU6; fc2 with its bias and the residual Add.
        MmCase{.name = "torch_mlp_fused", .nodes_after_fusion = 2},
        MmCase{.name = "scalar_bias_fused", .nodes_after_fusion = 2, .bias1_dims = {}},
        MmCase{.name = "rows_of_a_matrix_fused", .nodes_after_fusion = 2, .tokens = false},
        MmCase{.name = "scale_before_residual_fused", .nodes_after_fusion = 2, .scale = true},
        // Fused in the graph; at plan time the broadcast addend runs after the product.
        MmCase{.name = "broadcast_residual_after_the_product", .nodes_after_fusion = 2, .broadcast_residual = true},
        // A [1, H] bias is not a row constant: it stays an Add, and the Clip after it too.
        MmCase{.name = "matrix_bias_stays_an_add", .nodes_after_fusion = 4, .bias1_dims = {1, H}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace arcforge::test
