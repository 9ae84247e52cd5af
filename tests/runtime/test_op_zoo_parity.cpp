// Operator variants the shared models do not exercise (auto_pad, dilation, Gemm alpha/beta without
// transB, MatMul of two run-time tensors, legacy Softmax flattening, Upsample, negative-step Slice,
// Concat of a convolution with a constant, LayerNormalization, Pad in every mode and folded into a
// Conv), each a small model checked against ONNX Runtime.
#include <gtest/gtest.h>

#include <functional>

#include "parity_util.hpp"

namespace arcforge::test {
namespace {

struct ZooCase {
  std::string name;
  int opset;
  std::vector<std::vector<int64_t>> inputs;
  std::function<void(OnnxBuilder&)> body;  // reads x0, x1, ...; writes y
};

std::ostream& operator<<(std::ostream& os, const ZooCase& c) { return os << c.name; }

class OpZoo : public ::testing::TestWithParam<ZooCase> {};

TEST_P(OpZoo, MatchesOnnxRuntime) {
  const std::string why = ort_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "SKIPPED: " << why;
  const ZooCase& c = GetParam();
  TempDir dir;
  OnnxBuilder m(c.opset);
  std::vector<runtime::Tensor> inputs;
  for (std::size_t k = 0; k < c.inputs.size(); ++k) {
    std::string name = "x";
    name += std::to_string(k);
    m.input(name, c.inputs[k]);
    runtime::Tensor t{c.inputs[k], {}};
    t.data = random_values(static_cast<std::size_t>(t.numel()), 70 + static_cast<uint32_t>(k), -2, 2);
    inputs.push_back(std::move(t));
  }
  c.body(m);
  m.output("y");
  const std::string path = m.save(dir.path() / "m.onnx");
  const auto ref = run_onnxruntime(path, inputs);
  const auto ours = runtime::Model::load(path, {.threads = 2}).run(inputs);
  ASSERT_EQ(ours[0].shape, ref[0].shape);
  const Difference d = compare(ours[0], ref[0]);
  EXPECT_GT(d.scale, 0.0);
  EXPECT_LE(d.max_abs, 1e-5 * d.scale) << c.name;
}

using B = OnnxBuilder;

INSTANTIATE_TEST_SUITE_P(
    Variants, OpZoo,
    ::testing::Values(
        ZooCase{"conv_same_upper_stride2", 13, {{2, 4, 11, 10}},
                [](B& m) {
                  m.initializer("w", {6, 4, 4, 3}, random_values(6 * 4 * 12, 1));
                  m.initializer("b", {6}, random_values(6, 2));
                  auto& n = m.node("Conv", {"x0", "w", "b"}, {"c"});
                  B::attr(n, "auto_pad", std::string("SAME_UPPER"));
                  B::attr(n, "strides", std::vector<int64_t>{2, 2});
                  m.node("LeakyRelu", {"c"}, {"y"});
                }},
        ZooCase{"conv_dilated_grouped", 13, {{1, 6, 12, 12}},
                [](B& m) {
                  m.initializer("w", {4, 3, 3, 3}, random_values(4 * 3 * 9, 12));
                  auto& n = m.node("Conv", {"x0", "w"}, {"y"});
                  B::attr(n, "group", int64_t{2});
                  B::attr(n, "dilations", std::vector<int64_t>{2, 3});
                  B::attr(n, "pads", std::vector<int64_t>{1, 2, 2, 1});
                }},
        ZooCase{"conv_asymmetric_pads_then_sigmoid", 13, {{1, 3, 9, 9}},
                [](B& m) {
                  m.initializer("w", {5, 3, 2, 3}, random_values(5 * 3 * 6, 3));
                  auto& n = m.node("Conv", {"x0", "w"}, {"c"});
                  B::attr(n, "pads", std::vector<int64_t>{0, 2, 1, 0});
                  B::attr(n, "strides", std::vector<int64_t>{2, 1});
                  m.node("Sigmoid", {"c"}, {"y"});
                }},
        ZooCase{"gemm_alpha_beta_no_transB", 13, {{3, 5}},
                [](B& m) {
                  m.initializer("w", {5, 4}, random_values(20, 4));
                  m.initializer("c", {4}, random_values(4, 5));
                  auto& n = m.node("Gemm", {"x0", "w", "c"}, {"y"});
                  B::attr(n, "alpha", 0.5f);
                  B::attr(n, "beta", 2.0f);
                }},
        ZooCase{"matmul_runtime_batched", 13, {{2, 3, 4}, {2, 4, 5}},
                [](B& m) { m.node("MatMul", {"x0", "x1"}, {"y"}); }},
        ZooCase{"matmul_constant_3d_lhs", 13, {{2, 3, 4}},
                [](B& m) {
                  m.initializer("w", {4, 6}, random_values(24, 6));
                  m.node("MatMul", {"x0", "w"}, {"y"});
                }},
        ZooCase{"softmax_opset11_flattens_at_axis", 11, {{2, 3, 4}},
                [](B& m) { B::attr(m.node("Softmax", {"x0"}, {"y"}), "axis", int64_t{1}); }},
        ZooCase{"softmax_opset13_axis1", 13, {{2, 3, 4}},
                [](B& m) { B::attr(m.node("Softmax", {"x0"}, {"y"}), "axis", int64_t{1}); }},
        ZooCase{"upsample_opset9_nearest", 9, {{1, 2, 3, 5}},
                [](B& m) {
                  m.initializer("s", {4}, {1, 1, 2, 3});
                  B::attr(m.node("Upsample", {"x0", "s"}, {"y"}), "mode", std::string("nearest"));
                }},
        ZooCase{"resize_align_corners_linear", 13, {{1, 2, 4, 5}},
                [](B& m) {
                  m.initializer_i64("sz", {4}, {1, 2, 7, 3});
                  auto& n = m.node("Resize", {"x0", "", "", "sz"}, {"y"});
                  B::attr(n, "mode", std::string("linear"));
                  B::attr(n, "coordinate_transformation_mode", std::string("align_corners"));
                }},
        ZooCase{"pad_zero_then_conv_stride2_folded", 13, {{1, 4, 9, 8}},
                [](B& m) {
                  m.initializer_i64("p", {8}, {0, 0, 0, 1, 0, 0, 1, 1});
                  m.node("Pad", {"x0", "p"}, {"padded"});
                  m.initializer("w", {6, 4, 3, 3}, random_values(6 * 4 * 9, 13));
                  B::attr(m.node("Conv", {"padded", "w"}, {"y"}), "strides", std::vector<int64_t>{2, 2});
                }},
        ZooCase{"pad_reflect_opset11_then_conv", 11, {{2, 3, 6, 7}},
                [](B& m) {
                  m.initializer_i64("p", {8}, {0, 0, 2, 1, 0, 0, 1, 2});
                  B::attr(m.node("Pad", {"x0", "p"}, {"padded"}), "mode", std::string("reflect"));
                  m.initializer("w", {5, 3, 3, 3}, random_values(5 * 3 * 9, 14));
                  m.node("Conv", {"padded", "w"}, {"y"});
                }},
        ZooCase{"pad_edge_and_crop", 13, {{2, 3, 6, 7}},
                [](B& m) {
                  m.initializer_i64("p", {8}, {0, 1, -1, 3, 0, 0, 2, -2});
                  B::attr(m.node("Pad", {"x0", "p"}, {"y"}), "mode", std::string("edge"));
                }},
        ZooCase{"pad_constant_value_opset2", 10, {{2, 3, 4}},
                [](B& m) {
                  auto& n = m.node("Pad", {"x0"}, {"y"});
                  B::attr(n, "pads", std::vector<int64_t>{1, 0, 2, 0, 2, 1});
                  B::attr(n, "value", -0.5f);
                }},
        ZooCase{"pad_wrap_opset19_axes", 19, {{1, 2, 5, 6}},
                [](B& m) {
                  m.initializer_i64("p", {4}, {2, 3, 1, 4});
                  m.initializer_i64("ax", {2}, {-2, 3});
                  B::attr(m.node("Pad", {"x0", "p", "", "ax"}, {"y"}), "mode", std::string("wrap"));
                }},
        ZooCase{"slice_negative_step", 13, {{2, 7, 3}},
                [](B& m) {
                  m.initializer_i64("st", {1}, {-2}).initializer_i64("en", {1}, {0});
                  m.initializer_i64("ax", {1}, {1}).initializer_i64("sp", {1}, {-2});
                  m.node("Slice", {"x0", "st", "en", "ax", "sp"}, {"y"});
                }},
        ZooCase{"concat_conv_output_with_constant", 13, {{1, 3, 4, 4}},
                [](B& m) {
                  m.initializer("w", {16, 3, 1, 1}, random_values(48, 7));
                  m.initializer("k", {1, 2, 4, 4}, random_values(32, 8));
                  m.node("Conv", {"x0", "w"}, {"c"});
                  B::attr(m.node("Concat", {"c", "k"}, {"y"}), "axis", int64_t{1});
                }},
        ZooCase{"pool_global_max_then_hardswish", 14, {{2, 5, 6, 7}},
                [](B& m) {
                  m.node("GlobalMaxPool", {"x0"}, {"p"});
                  m.node("HardSwish", {"p"}, {"y"});
                }},
        ZooCase{"standalone_batchnorm_2d_and_clip_attrs", 10, {{4, 6}},
                [](B& m) {
                  m.initializer("g", {6}, random_values(6, 9, 0.5f, 1.5f)).initializer("b", {6}, random_values(6, 10));
                  m.initializer("mu", {6}, random_values(6, 11)).initializer("v", {6}, random_values(6, 12, 0.5f, 2));
                  m.node("BatchNormalization", {"x0", "g", "b", "mu", "v"}, {"n"});
                  auto& c = m.node("Clip", {"n"}, {"y"});
                  B::attr(c, "min", -0.5f);
                  B::attr(c, "max", 0.75f);
                }},
        // A transformer's residual stream: rows far from zero mean, normalised over the last axis.
        ZooCase{"layernorm_opset17_offset_rows", 17, {{2, 5, 16}},
                [](B& m) {
                  m.initializer("off", {1}, {40.0f});
                  m.node("Add", {"x0", "off"}, {"s"});
                  m.initializer("g", {16}, random_values(16, 13, 0.5f, 1.5f)).initializer("b", {16}, random_values(16, 14));
                  B::attr(m.node("LayerNormalization", {"s", "g", "b"}, {"y"}), "epsilon", 1e-6f);
                }},
        ZooCase{"layernorm_over_three_axes_without_bias", 17, {{2, 3, 4, 5}},
                [](B& m) {
                  m.initializer("g", {3, 4, 5}, random_values(60, 15, 0.5f, 1.5f));
                  auto& n = m.node("LayerNormalization", {"x0", "g"}, {"y"});
                  B::attr(n, "axis", int64_t{1});
                  B::attr(n, "epsilon", 1e-3f);
                }}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace arcforge::test
