// Pad (src/runtime/ops_pad.cpp) against a double-precision reference in every mode, with crops and
// opset 18's axes, on plain and blocked layouts; a zero Pad before a convolution folded into its
// padding (optimize_pad.cpp), and the Pads that must stay; errors that name the file and node.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>

#include "arcforge/common/error.hpp"
#include "arcforge/runtime/model.hpp"
#include "onnx_builder.hpp"
#include "reference_ops.hpp"

namespace arcforge::test {
namespace {

using runtime::Model;
using runtime::StepTiming;
using runtime::Tensor;

const std::vector<int64_t> kInput = {2, 3, 5, 6};

Tensor input_tensor(const std::vector<int64_t>& dims, uint32_t seed) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return Tensor{dims, random_values(static_cast<std::size_t>(n), seed)};
}

// Runs the model on `x` with a profile; `steps` gets the kernels it ran.
std::vector<Tensor> run_profiled(const std::string& path, const Tensor& x, std::vector<StepTiming>* steps) {
  const Model model = Model::load(path, {.threads = 2});
  auto session = model.new_session();
  std::vector<StepTiming> profile;
  auto y = session.run({x}, profile);
  if (steps) *steps = profile;
  return y;
}

bool ran_a_pad(const std::vector<StepTiming>& steps) {
  for (const auto& s : steps) {
    if (s.kernel.rfind("pad", 0) == 0) return true;  // "pad", or "pad:blocked" in a blocked layout
  }
  return false;
}

struct PadCase {
  std::string name;
  int opset;
  std::string mode;
  std::vector<int64_t> begin, end;  // per axis of kInput
  float value;
  // How the file states it: attributes (opset < 11), inputs, or inputs with `axes` (only the
  // axes whose pads are not both zero).
  enum class Form { attributes, inputs, axes } form;
};

std::ostream& operator<<(std::ostream& os, const PadCase& c) { return os << c.name; }

class PadModes : public ::testing::TestWithParam<PadCase> {};

TEST_P(PadModes, MatchTheReference) {
  const PadCase& c = GetParam();
  TempDir dir;
  OnnxBuilder m(c.opset);
  m.input("x", kInput);
  std::vector<int64_t> pads = c.begin;
  pads.insert(pads.end(), c.end.begin(), c.end.end());
  if (c.form == PadCase::Form::attributes) {
    auto& n = m.node("Pad", {"x"}, {"y"});
    OnnxBuilder::attr(n, "pads", pads);
    OnnxBuilder::attr(n, "value", c.value);
    OnnxBuilder::attr(n, "mode", c.mode);
  } else {
    std::vector<int64_t> axes, begin, end;
    for (std::size_t k = 0; k < kInput.size(); ++k) {
      if (c.form == PadCase::Form::inputs || c.begin[k] != 0 || c.end[k] != 0) {
        axes.push_back(static_cast<int64_t>(k) - static_cast<int64_t>(kInput.size()));  // negative: -4..-1
        begin.push_back(c.begin[k]);
        end.push_back(c.end[k]);
      }
    }
    begin.insert(begin.end(), end.begin(), end.end());
    m.initializer_i64("pads", {static_cast<int64_t>(begin.size())}, begin);
    m.initializer("value", {}, {c.value});
    std::vector<std::string> inputs = {"x", "pads", "value"};
    if (c.form == PadCase::Form::axes) {
      m.initializer_i64("axes", {static_cast<int64_t>(axes.size())}, axes);
      inputs.push_back("axes");
    }
    OnnxBuilder::attr(m.node("Pad", inputs, {"y"}), "mode", c.mode);
  }
  m.output("y");
  const std::string path = m.save(dir.file("pad.onnx"));
  const Tensor x = input_tensor(kInput, 5);
  std::vector<int64_t> want_dims;
  const ref::Vec want = ref::pad(ref::to_double(x.data), kInput, c.begin, c.end, c.mode, c.value, want_dims);
  std::vector<StepTiming> steps;
  const auto y = run_profiled(path, x, &steps);
  ASSERT_EQ(y.size(), 1u);
  EXPECT_EQ(y[0].shape, want_dims);
  EXPECT_EQ(ref::max_abs_diff(y[0].data, want), 0.0) << "a copy must be exact";
  EXPECT_TRUE(ran_a_pad(steps));
}

using F = PadCase::Form;

INSTANTIATE_TEST_SUITE_P(
    Cases, PadModes,
    ::testing::Values(
        PadCase{"constant_opset2_attributes", 10, "constant", {0, 1, 2, 0}, {1, 0, 1, 3}, 0.5f, F::attributes},
        PadCase{"constant_crops_and_pads", 13, "constant", {0, 0, -1, 2}, {0, -2, 2, -3}, -1.25f, F::inputs},
        PadCase{"reflect", 13, "reflect", {0, 0, 2, 1}, {0, 0, 1, 4}, 0, F::inputs},
        PadCase{"reflect_further_than_the_axis", 13, "reflect", {0, 0, 6, 0}, {0, 0, 9, 11}, 0, F::inputs},
        PadCase{"reflect_after_a_crop", 13, "reflect", {0, 0, -1, 3}, {0, 0, 2, -2}, 0, F::inputs},
        PadCase{"edge", 13, "edge", {0, 1, 3, 0}, {1, 0, 0, 2}, 0, F::inputs},
        PadCase{"edge_after_a_crop", 13, "edge", {0, 0, -2, 1}, {0, 0, 1, -1}, 0, F::inputs},
        PadCase{"wrap_opset19", 19, "wrap", {0, 0, 7, 2}, {0, 0, 1, 13}, 0, F::inputs},
        PadCase{"constant_opset18_negative_axes", 18, "constant", {0, 0, 1, 0}, {0, 0, 2, 3}, 2.0f, F::axes},
        PadCase{"edge_opset18_one_axis", 18, "edge", {0, 0, 0, 4}, {0, 0, 0, 1}, 0, F::axes}),
    [](const ::testing::TestParamInfo<PadCase>& info) { return info.param.name; });

// Between two convolutions the Pad works in their blocked layout (nChw16c or nChw8c): no reorder
// either side. 1x1 Conv (16 channels) -> Pad -> 1x1 Conv, against the reference in every mode.
TEST(PadLayouts, BetweenConvolutionsThePadKeepsTheirBlockedLayout) {
  constexpr int64_t c = 16, h = 7, w = 9;
  for (const std::string mode : {"constant", "reflect", "edge", "wrap"}) {
    TempDir dir;
    OnnxBuilder m(19);
    m.input("x", {2, c, h, w});
    m.initializer("w0", {c, c, 1, 1}, random_values(c * c, 41, -0.3f, 0.3f));
    m.initializer("w1", {c, c, 1, 1}, random_values(c * c, 42, -0.3f, 0.3f));
    m.node("Conv", {"x", "w0"}, {"a"});
    const std::vector<int64_t> begin = {0, 0, 2, -1}, end = {0, 0, 1, 3};
    m.initializer_i64("pads", {8}, {0, 0, 2, -1, 0, 0, 1, 3});
    m.initializer("value", {}, {0.5f});
    OnnxBuilder::attr(m.node("Pad", {"a", "pads", "value"}, {"padded"}), "mode", mode);
    m.node("Conv", {"padded", "w1"}, {"y"});
    m.output("y");
    const std::string path = m.save(dir.file("conv_pad_conv.onnx"));
    const Tensor x = input_tensor({2, c, h, w}, 6);
    std::vector<StepTiming> steps;
    const auto y = run_profiled(path, x, &steps);
    bool blocked = false;
    for (const auto& s : steps) blocked = blocked || s.kernel == "pad:blocked";
    EXPECT_TRUE(blocked) << mode << ": the Pad reordered its input to plain";
    // Both convolutions 1x1: stride 1, no pads, groups or dilation.
    int64_t oh = 0, ow = 0;
    const ref::Vec w0 = ref::to_double(random_values(c * c, 41, -0.3f, 0.3f));
    const ref::Vec w1 = ref::to_double(random_values(c * c, 42, -0.3f, 0.3f));
    const ref::Vec a = ref::conv2d(ref::to_double(x.data), 2, c, h, w, w0, c, 1, 1, {}, 1, 0, 0, 0, 0, 1, 1, oh, ow);
    std::vector<int64_t> pd;
    const ref::Vec padded = ref::pad(a, {2, c, h, w}, begin, end, mode, 0.5, pd);
    const ref::Vec want = ref::conv2d(padded, 2, c, pd[2], pd[3], w1, c, 1, 1, {}, 1, 0, 0, 0, 0, 1, 1, oh, ow);
    EXPECT_EQ(y.at(0).shape, (std::vector<int64_t>{2, c, oh, ow})) << mode;
    EXPECT_LE(ref::max_abs_diff(y[0].data, want), 1e-5 * std::max(1.0, ref::max_abs(want))) << mode;
  }
}

// x [1, 4, 9, 8] -> Pad -> 3x3 Conv (stride 2) -> y: TensorFlow's "same" padding as exported.
struct PadConv {
  std::vector<int64_t> pad_begin = {0, 0, 0, 0}, pad_end = {0, 0, 1, 1};
  float value = 0;
  std::string mode = "constant";
  std::string auto_pad = "NOTSET";
  std::vector<int64_t> conv_pads = {0, 0, 0, 0};  // top, left, bottom, right
  bool second_conv = false;                        // a second Conv (1x1) reads the Pad too
};

constexpr int64_t kC = 4, kH = 9, kW = 8, kOC = 6;

std::string save_pad_conv(const TempDir& dir, const PadConv& p) {
  OnnxBuilder m(13);
  m.input("x", {1, kC, kH, kW});
  std::vector<int64_t> pads = p.pad_begin;
  pads.insert(pads.end(), p.pad_end.begin(), p.pad_end.end());
  m.initializer_i64("pads", {8}, pads);
  m.initializer("value", {}, {p.value});
  OnnxBuilder::attr(m.node("Pad", {"x", "pads", "value"}, {"padded"}, "the_pad"), "mode", p.mode);
  m.initializer("w", {kOC, kC, 3, 3}, random_values(kOC * kC * 9, 21, -0.5f, 0.5f));
  m.initializer("b", {kOC}, random_values(kOC, 22));
  auto& conv = m.node("Conv", {"padded", "w", "b"}, {"y"});
  OnnxBuilder::attr(conv, "strides", std::vector<int64_t>{2, 2});
  if (p.auto_pad != "NOTSET") {
    OnnxBuilder::attr(conv, "auto_pad", p.auto_pad);
  } else {
    OnnxBuilder::attr(conv, "pads", p.conv_pads);
  }
  m.output("y");
  if (p.second_conv) {
    m.initializer("w1", {2, kC, 1, 1}, random_values(2 * kC, 23));
    m.node("Conv", {"padded", "w1"}, {"y1"});
    m.output("y1");
  }
  return m.save(dir.file("pad_conv.onnx"));
}

// The reference: the padded input (ref::pad), then the convolution with its own pads.
ref::Vec reference_pad_conv(const Tensor& x, const PadConv& p, std::vector<int64_t>& dims) {
  std::vector<int64_t> padded_dims;
  const ref::Vec padded =
      ref::pad(ref::to_double(x.data), x.shape, p.pad_begin, p.pad_end, p.mode, p.value, padded_dims);
  int64_t top = p.conv_pads[0], left = p.conv_pads[1], bottom = p.conv_pads[2], right = p.conv_pads[3];
  if (p.auto_pad == "SAME_UPPER") {
    // ONNX: total = (ceil(in / stride) - 1) * stride + kernel - in, the odd one at the end.
    const auto total = [](int64_t in) { return std::max<int64_t>(0, ((in + 1) / 2 - 1) * 2 + 3 - in); };
    top = total(padded_dims[2]) / 2;
    bottom = total(padded_dims[2]) - top;
    left = total(padded_dims[3]) / 2;
    right = total(padded_dims[3]) - left;
  }
  int64_t oh = 0, ow = 0;
  const ref::Vec w = ref::to_double(random_values(kOC * kC * 9, 21, -0.5f, 0.5f));
  const ref::Vec b = ref::to_double(random_values(kOC, 22));
  ref::Vec y = ref::conv2d(padded, 1, padded_dims[1], padded_dims[2], padded_dims[3], w, kOC, 3, 3, b, 2, top, left,
                           bottom, right, 1, 1, oh, ow);
  dims = {1, kOC, oh, ow};
  return y;
}

// Runs `p` and checks its first output against the reference; returns whether a Pad step ran.
bool check_pad_conv(const PadConv& p, const std::string& what) {
  TempDir dir;
  const std::string path = save_pad_conv(dir, p);
  const Tensor x = input_tensor({1, kC, kH, kW}, 9);
  std::vector<StepTiming> steps;
  const auto y = run_profiled(path, x, &steps);
  std::vector<int64_t> dims;
  const ref::Vec want = reference_pad_conv(x, p, dims);
  EXPECT_EQ(y.at(0).shape, dims) << what;
  EXPECT_LE(ref::max_abs_diff(y[0].data, want), 1e-5 * std::max(1.0, ref::max_abs(want))) << what;
  return ran_a_pad(steps);
}

TEST(PadFold, AZeroSpatialPadBecomesTheConvolutionsPadding) {
  EXPECT_FALSE(check_pad_conv({}, "TensorFlow's same padding"));
  PadConv grown;
  grown.pad_begin = {0, 0, 2, 1};
  grown.pad_end = {0, 0, 0, 3};
  grown.conv_pads = {1, 0, 1, 2};
  EXPECT_FALSE(check_pad_conv(grown, "the Pad's added to the Conv's own"));
  PadConv valid;
  valid.auto_pad = "VALID";
  EXPECT_FALSE(check_pad_conv(valid, "auto_pad VALID"));
}

TEST(PadFold, APadTwoConvolutionsReadIsFoldedIntoBoth) {
  PadConv shared;
  shared.second_conv = true;
  TempDir dir;
  const std::string path = save_pad_conv(dir, shared);
  const Tensor x = input_tensor({1, kC, kH, kW}, 9);
  std::vector<StepTiming> steps;
  const auto y = run_profiled(path, x, &steps);
  EXPECT_FALSE(ran_a_pad(steps));
  std::vector<int64_t> dims;
  const ref::Vec want = reference_pad_conv(x, shared, dims);
  EXPECT_LE(ref::max_abs_diff(y.at(0).data, want), 1e-5 * std::max(1.0, ref::max_abs(want)));
  // The 1x1 convolution sees the padded input: zeros in its last row and column.
  ASSERT_EQ(y.at(1).shape, (std::vector<int64_t>{1, 2, kH + 1, kW + 1}));
  const ref::Vec w1 = ref::to_double(random_values(2 * kC, 23));
  for (int64_t o = 0; o < 2; ++o) {
    for (int64_t i = 0; i < kH + 1; ++i) {
      for (int64_t j = 0; j < kW + 1; ++j) {
        double acc = 0;
        for (int64_t c = 0; c < kC && i < kH && j < kW; ++c) acc += w1[o * kC + c] * x.data[(c * kH + i) * kW + j];
        EXPECT_NEAR(y[1].data[(o * (kH + 1) + i) * (kW + 1) + j], acc, 1e-5) << o << "," << i << "," << j;
      }
    }
  }
}

// x -> zero Pad (`pads` over every axis) -> 3x3 Conv, no bias, weights from `weight_seed` in
// [-range, range] -> y, saved as `file` in `dir`.
std::string save_zero_pad_conv(const TempDir& dir, const std::string& file, const std::vector<int64_t>& x_dims,
                               const std::vector<int64_t>& pads, int64_t out_channels, uint32_t weight_seed,
                               float range) {
  OnnxBuilder m(13);
  m.input("x", x_dims);
  m.initializer_i64("pads", {8}, pads);
  m.node("Pad", {"x", "pads"}, {"padded"});
  const int64_t in_channels = x_dims[1] + pads[1] + pads[5];
  m.initializer("w", {out_channels, in_channels, 3, 3},
                random_values(static_cast<std::size_t>(out_channels * in_channels * 9), weight_seed, -range, range));
  m.node("Conv", {"padded", "w"}, {"y"});
  m.output("y");
  return m.save(dir.file(file));
}

// The folded padding is asymmetric (only bottom and right): Winograd's tiles must take it as the
// direct kernels do.
TEST(PadFold, AnAsymmetricPadFoldedIntoAWinogradConvolution) {
  constexpr int64_t c = 16, h = 12, w = 11;
  TempDir dir;
  const std::string path =
      save_zero_pad_conv(dir, "pad_winograd.onnx", {1, c, h, w}, {0, 0, 0, 2, 0, 0, 1, 0}, c, 31, 0.2f);
  const Tensor x = input_tensor({1, c, h, w}, 12);
  ::setenv("ARCFORGE_RUNTIME_WINOGRAD", "all", 1);  // read when planning
  std::vector<StepTiming> steps;
  const auto y = run_profiled(path, x, &steps);
  ::unsetenv("ARCFORGE_RUNTIME_WINOGRAD");
  EXPECT_FALSE(ran_a_pad(steps));
  bool winograd = false;
  for (const auto& s : steps) winograd = winograd || s.kernel.rfind("winograd", 0) == 0;
  if (!winograd) std::printf("NOTE: no Winograd on this CPU (below AVX2 or switched off): the direct kernel ran\n");
  int64_t oh = 0, ow = 0;
  const ref::Vec weights = ref::to_double(random_values(c * c * 9, 31, -0.2f, 0.2f));
  // Stride 1; pads top 0, left 2, bottom 1, right 0 (the Pad's); no groups or dilation.
  const ref::Vec want =
      ref::conv2d(ref::to_double(x.data), 1, c, h, w, weights, c, 3, 3, {}, 1, 0, 2, 1, 0, 1, 1, oh, ow);
  EXPECT_EQ(y.at(0).shape, (std::vector<int64_t>{1, c, oh, ow}));
  EXPECT_LE(ref::max_abs_diff(y[0].data, want), 1e-5 * std::max(1.0, ref::max_abs(want)));
}

TEST(PadFold, PadsTheConvolutionCannotTakeStay) {
  PadConv nonzero;
  nonzero.value = 0.75f;
  EXPECT_TRUE(check_pad_conv(nonzero, "a non-zero constant"));
  PadConv reflect;
  reflect.mode = "reflect";
  EXPECT_TRUE(check_pad_conv(reflect, "mode reflect"));
  PadConv same;
  same.auto_pad = "SAME_UPPER";
  EXPECT_TRUE(check_pad_conv(same, "auto_pad SAME_UPPER"));
  PadConv crop;
  crop.pad_begin = {0, 0, -1, 0};
  crop.pad_end = {0, 0, 1, 1};
  EXPECT_TRUE(check_pad_conv(crop, "a crop"));
}

TEST(PadFold, AChannelPadStays) {
  TempDir dir;
  const std::string path =
      save_zero_pad_conv(dir, "channel_pad.onnx", {1, kC - 1, kH, kW}, {0, 1, 0, 0, 0, 0, 0, 0}, kOC, 21, 0.5f);
  const Tensor x = input_tensor({1, kC - 1, kH, kW}, 10);
  std::vector<StepTiming> steps;
  const auto y = run_profiled(path, x, &steps);
  EXPECT_TRUE(ran_a_pad(steps));
  std::vector<int64_t> padded_dims;
  const ref::Vec padded =
      ref::pad(ref::to_double(x.data), x.shape, {0, 1, 0, 0}, {0, 0, 0, 0}, "constant", 0, padded_dims);
  int64_t oh = 0, ow = 0;
  const ref::Vec want = ref::conv2d(padded, 1, kC, kH, kW, ref::to_double(random_values(kOC * kC * 9, 21, -0.5f, 0.5f)),
                                    kOC, 3, 3, {}, 1, 0, 0, 0, 0, 1, 1, oh, ow);
  EXPECT_LE(ref::max_abs_diff(y.at(0).data, want), 1e-5 * std::max(1.0, ref::max_abs(want)));
}

// `build` adds a Pad named "bad" reading "x" [1, 2, 3, 4], and nodes that end in "y".
void expect_pad_error(const std::function<void(OnnxBuilder&)>& build, const std::string& needle, int opset = 13) {
  TempDir dir;
  OnnxBuilder m(opset);
  m.input("x", {1, 2, 3, 4});
  build(m);
  m.output("y");
  const std::string path = m.save(dir.file("bad_pad.onnx"));
  try {
    Model::load(path, {.threads = 1}).run({input_tensor({1, 2, 3, 4}, 1)});
    FAIL() << "no error; expected '" << needle << "'";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find("'bad' (Pad)"), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

TEST(PadErrors, NameTheFileTheNodeAndTheProblem) {
  expect_pad_error(
      [](OnnxBuilder& m) {
        m.initializer_i64("pads", {8}, {0, 0, 1, 1, 0, 0, 1, 1});
        OnnxBuilder::attr(m.node("Pad", {"x", "pads"}, {"y"}, "bad"), "mode", std::string("mirror"));
      },
      "unknown mode 'mirror'");
  expect_pad_error(
      [](OnnxBuilder& m) {
        m.initializer_i64("pads", {6}, {0, 1, 1, 0, 1, 1});
        m.node("Pad", {"x", "pads"}, {"y"}, "bad");
      },
      "6 pads for 4 axes");
  expect_pad_error(
      [](OnnxBuilder& m) {
        m.initializer_i64("pads", {8}, {0, 0, -2, 0, 0, 0, -2, 0});
        m.node("Pad", {"x", "pads"}, {"y"}, "bad");
      },
      "pads remove more than axis 2's 3");
  expect_pad_error(
      [](OnnxBuilder& m) {
        m.initializer_i64("pads", {8}, {0, 0, -3, 0, 0, 0, 1, 0});
        OnnxBuilder::attr(m.node("Pad", {"x", "pads"}, {"y"}, "bad"), "mode", std::string("edge"));
      },
      "mode edge pads an empty axis 2");
  expect_pad_error(
      [](OnnxBuilder& m) {
        m.initializer_i64("pads", {8}, {0, 0, int64_t{1} << 50, 0, 0, 0, 0, 0});
        m.node("Pad", {"x", "pads"}, {"y"}, "bad");
      },
      "out of range");
  expect_pad_error(
      [](OnnxBuilder& m) {
        m.initializer_i64("pads", {8}, {0, 0, 1 << 30, 1 << 30, 0, 0, 0, 0});
        m.node("Pad", {"x", "pads"}, {"y"}, "bad");
      },
      "Options::max_activation_bytes");
  // Before a convolution the Pad is not folded either: the fold would add up the repeats.
  expect_pad_error(
      [](OnnxBuilder& m) {
        m.initializer_i64("pads", {4}, {1, 1, 0, 0});
        m.initializer_i64("axes", {2}, {2, -2});
        m.node("Pad", {"x", "pads", "", "axes"}, {"padded"}, "bad");
        m.initializer("w", {3, 2, 3, 3}, random_values(3 * 2 * 9, 7));
        m.node("Conv", {"padded", "w"}, {"y"});
      },
      "repeated axis 2", 18);
}

}  // namespace
}  // namespace arcforge::test
