// Sibling convolutions (a detector's score, box and landmark heads: one input, one geometry, a few
// output channels each) merged into one convolution and a Split (src/runtime/optimize_siblings.cpp),
// against a double-precision convolution per head written in the test (a box head scaled by a
// constant, as SCRFD-2.5g's, included); and the siblings that must stay apart.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <set>

#include "arcforge/runtime/model.hpp"
#include "onnx_builder.hpp"
#include "reference_ops.hpp"

namespace arcforge::test {
namespace {

using runtime::Model;
using runtime::Tensor;

struct Head {
  std::string name;
  int64_t channels;
  std::vector<int64_t> strides = {1, 1};
  bool bias = true;
  int64_t kernel = 3;
  float scale = 1;  // other than 1: the output is multiplied by this scalar (SCRFD's box scales)
};

constexpr int64_t kBatch = 2, kChannels = 32, kSize = 18;

struct Built {
  std::string path;
  std::vector<std::vector<float>> weights, biases;
};

// x -> each head's Conv (pads 1) -> a graph output; the first head's output also goes through a
// Sigmoid, as SCRFD's score head does, so that a merged head still feeds a node.
Built build(const std::vector<Head>& heads, const std::string& path) {
  Built b;
  OnnxBuilder m(13);
  m.input("x", {-1, kChannels, kSize, kSize});
  for (std::size_t j = 0; j < heads.size(); ++j) {
    const Head& h = heads[j];
    b.weights.push_back(random_values(h.channels * kChannels * h.kernel * h.kernel, 10 + j, -0.3f, 0.3f));
    b.biases.push_back(h.bias ? random_values(h.channels, 20 + j) : std::vector<float>());
    m.initializer(h.name + "_w", {h.channels, kChannels, h.kernel, h.kernel}, b.weights.back());
    std::vector<std::string> inputs = {"x", h.name + "_w"};
    if (h.bias) {
      m.initializer(h.name + "_b", {h.channels}, b.biases.back());
      inputs.push_back(h.name + "_b");
    }
    const int64_t pad = h.kernel / 2;
    const std::string conv_out = h.scale != 1 ? h.name + "_unscaled" : h.name;
    auto& conv = m.node("Conv", inputs, {conv_out}, h.name);
    OnnxBuilder::attr(conv, "pads", std::vector<int64_t>{pad, pad, pad, pad});
    OnnxBuilder::attr(conv, "strides", h.strides);
    if (h.scale != 1) {
      m.initializer(h.name + "_scale", {}, {h.scale});
      m.node("Mul", {conv_out, h.name + "_scale"}, {h.name});
    }
    m.output(h.name);
  }
  m.node("Sigmoid", {heads[0].name}, {"score"});
  m.output("score");
  b.path = m.save(path);
  return b;
}

// The convolution steps of a profiled run, e.g. "Conv_a+Conv_b (winograd_f4x4_3x3:per_thread)".
std::vector<std::string> conv_steps(const Model& model, const std::vector<Tensor>& inputs) {
  auto session = model.new_session();
  std::vector<runtime::StepTiming> steps;
  session.run(inputs, steps);
  std::vector<std::string> convs;
  for (const auto& step : steps) {
    if (step.node.rfind("head", 0) == 0 && step.node.find("/split") == std::string::npos) convs.push_back(step.node);
  }
  return convs;
}

// Runs the heads and checks every output against the reference; returns the distinct convolution
// nodes the plan ran.
std::set<std::string> check_heads(const std::vector<Head>& heads) {
  TempDir dir;
  const Built b = build(heads, dir.file("heads.onnx"));
  const std::vector<Tensor> inputs = {
      Tensor{{kBatch, kChannels, kSize, kSize}, random_values(kBatch * kChannels * kSize * kSize, 4, -2.0f, 2.0f)}};
  const Model model = Model::load(b.path, {.threads = 2});
  const std::vector<Tensor> y = model.run(inputs);
  EXPECT_EQ(y.size(), heads.size() + 1);
  for (std::size_t j = 0; j < heads.size() && j < y.size(); ++j) {
    const Head& h = heads[j];
    int64_t oh = 0, ow = 0;
    const int64_t pad = h.kernel / 2;
    ref::Vec want = ref::conv2d(ref::to_double(inputs[0].data), kBatch, kChannels, kSize, kSize,
                                ref::to_double(b.weights[j]), h.channels, h.kernel, h.kernel,
                                ref::to_double(b.biases[j]), h.strides[0], pad, pad, pad, pad, 1, 1, oh, ow);
    for (double& v : want) v *= h.scale;
    EXPECT_EQ(y[j].shape, (std::vector<int64_t>{kBatch, h.channels, oh, ow})) << h.name;
    const double diff = ref::max_abs_diff(y[j].data, want), scale = ref::max_abs(want);
    std::printf("[figures] %s (%ld channels): max |ours - double| %.3g of %.3g\n", h.name.c_str(),
                static_cast<long>(h.channels), diff, scale);
    EXPECT_LE(diff, 1e-5 * scale) << h.name;
    if (j == 0) {
      ref::Vec score(want.size());
      for (std::size_t i = 0; i < want.size(); ++i) score[i] = 1.0 / (1.0 + std::exp(-want[i]));
      EXPECT_LE(ref::max_abs_diff(y.back().data, score), 0.25 * 1e-5 * scale);  // the sigmoid's slope is at most 1/4
    }
  }
  const std::vector<std::string> steps = conv_steps(model, inputs);
  return std::set<std::string>(steps.begin(), steps.end());
}

TEST(SiblingConvs, ScoreBoxAndLandmarkHeadsRunAsOneConvolution) {
  // SCRFD's heads: 2 + 8 + 20 = 30 channels, padded to 32 with zero filters; one without a bias.
  const std::set<std::string> convs =
      check_heads({{"head_score", 2}, {"head_box", 8, {1, 1}, false}, {"head_kps", 20}});
  EXPECT_EQ(convs, (std::set<std::string>{"head_score+head_box+head_kps"}));
}

TEST(SiblingConvs, ABoxHeadMultipliedByItsScaleMergesToo) {
  // SCRFD-2.5g multiplies each level's box head by a learnt scalar: folded into that head's weights
  // and bias (optimize.cpp, fold_batchnorm), it is a plain sibling again. A negative scale too.
  EXPECT_EQ(check_heads({{"head_score", 2}, {"head_box", 8, {1, 1}, true, 3, 1.75f}, {"head_kps", 20}}),
            (std::set<std::string>{"head_score+head_box+head_kps"}));
  EXPECT_EQ(check_heads({{"head_score", 2}, {"head_box", 8, {1, 1}, false, 3, -0.5f}}),
            (std::set<std::string>{"head_score+head_box"}));
}

TEST(SiblingConvs, OnlyTheSameGeometryMerges) {
  // A stride-2 sibling, a 1x1 sibling and a 40-channel one (more than a head) stay apart; the two
  // that agree merge.
  const std::set<std::string> convs = check_heads({{"head_a", 4},
                                                   {"head_stride2", 4, {2, 2}},
                                                   {"head_b", 6},
                                                   {"head_1x1", 4, {1, 1}, true, 1},
                                                   {"head_wide", 40}});
  EXPECT_EQ(convs, (std::set<std::string>{"head_a+head_b", "head_stride2", "head_1x1", "head_wide"}));
}

}  // namespace
}  // namespace arcforge::test
