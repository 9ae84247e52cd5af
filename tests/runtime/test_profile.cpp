// Session::run with a profile: the same outputs as a plain run, and one timing per executed step,
// in order, named after the graph's nodes.
#include <gtest/gtest.h>

#include <set>

#include "arcforge/runtime/model.hpp"
#include "onnx_builder.hpp"

namespace arcforge::test {
namespace {

TEST(Profile, TimesEveryStepAndChangesNoOutput) {
  TempDir dir;
  OnnxBuilder m(13);
  m.input("x", {1, 2, 6, 6}).output("y");
  std::vector<float> w(4 * 2 * 3 * 3);
  for (std::size_t k = 0; k < w.size(); ++k) w[k] = 0.05f * static_cast<float>(k % 7) - 0.1f;
  m.initializer("w", {4, 2, 3, 3}, w);
  OnnxBuilder::attr(m.node("Conv", {"x", "w"}, {"c"}, "conv"), "pads", std::vector<int64_t>{1, 1, 1, 1});
  m.node("Relu", {"c"}, {"r"}, "relu");
  OnnxBuilder::attr(m.node("Softmax", {"r"}, {"y"}, "softmax"), "axis", int64_t{1});
  const auto model = runtime::Model::load(m.save(dir.path() / "m.onnx"), {.threads = 1});

  runtime::Tensor x{{1, 2, 6, 6}, std::vector<float>(72)};
  for (std::size_t k = 0; k < x.data.size(); ++k) x.data[k] = static_cast<float>(k % 11) / 11.0f - 0.4f;
  auto session = model.new_session();
  const auto plain = session.run({x});
  std::vector<runtime::StepTiming> steps;
  const auto profiled = session.run({x}, steps);
  ASSERT_EQ(profiled.size(), 1u);
  EXPECT_EQ(profiled[0].data, plain[0].data);  // bit for bit

  ASSERT_GE(steps.size(), 2u);  // at least the convolution (Relu fused into it) and the softmax
  // "output": the reorder of a result into the caller's plain layout, after the last node.
  const std::set<std::string> nodes = {"conv", "relu", "softmax", "output"};
  std::set<std::string> seen;
  double last_start = 0;
  for (const auto& step : steps) {
    EXPECT_TRUE(nodes.count(step.node)) << step.node;
    seen.insert(step.node);
    EXPECT_FALSE(step.kernel.empty()) << step.node;
    EXPECT_GE(step.ms, 0.0);
    EXPECT_GE(step.start_ms, last_start) << "steps are listed in the order they ran";
    last_start = step.start_ms + step.ms;
  }
  EXPECT_TRUE(seen.count("conv"));
  EXPECT_TRUE(seen.count("softmax"));
  // A second profiled run replaces the list rather than appending to it.
  std::vector<runtime::StepTiming> again = steps;
  session.run({x}, again);
  EXPECT_EQ(again.size(), steps.size());
}

}  // namespace
}  // namespace arcforge::test
