// Post-training quantization: the calibration thresholds on histograms with known answers, and
// `quantize_model` / `arcforge quantize` end to end on a small network: the QDQ file passes
// libonnx's checker (or quantize_model throws), ONNX Runtime runs it and agrees with our int8 run,
// and the int8 output stays close to the fp32 model's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/runtime/face_input.hpp"
#include "arcforge/runtime/quantize.hpp"
#include "parity_util.hpp"
#include "quant_util.hpp"

namespace arcforge::test {
namespace {

using runtime::CalibrationMethod;
using runtime::MagnitudeHistogram;
using runtime::Model;
using runtime::Precision;
using runtime::Tensor;

TEST(Calibration, MinmaxAndPercentileThresholds) {
  MagnitudeHistogram h;
  h.range = 10.0f;
  h.counts.assign(100, 0.0);  // bins of width 0.1
  h.counts[4] = 9990;         // |x| in [0.4, 0.5)
  h.counts[99] = 10;          // the outliers at the top
  EXPECT_FLOAT_EQ(runtime::calibration_threshold(h, CalibrationMethod::minmax, 0, 127), 10.0f);
  // 99.9 % of 10000 = 9990 values are at or below the end of bin 4.
  EXPECT_NEAR(runtime::calibration_threshold(h, CalibrationMethod::percentile, 99.9, 127), 0.5f, 1e-6);
  EXPECT_NEAR(runtime::calibration_threshold(h, CalibrationMethod::percentile, 99.95, 127), 10.0f, 1e-6);
  EXPECT_THROW(runtime::calibration_threshold(h, CalibrationMethod::percentile, 0, 127), ConfigError);
}

TEST(Calibration, EntropyClipsRareOutliersButNotTheBulk) {
  // A bell-shaped bulk up to |x| ~ 3 and a handful of values near 100: clipping the outliers costs
  // little divergence, covering them would leave the bulk with a few quantization levels.
  MagnitudeHistogram h;
  h.range = 100.0f;
  h.counts.assign(2048, 0.0);
  for (int k = 0; k < 2048; ++k) {
    const double x = (k + 0.5) * 100.0 / 2048;
    h.counts[k] = std::round(1e6 * std::exp(-x * x / 2));
  }
  h.counts[2040] += 3;
  const float t = runtime::calibration_threshold(h, CalibrationMethod::entropy, 0, 127);
  std::printf("[calibration] entropy threshold %.3f of range 100\n", t);
  EXPECT_GT(t, 2.5f);
  EXPECT_LT(t, 10.0f);
  // A flat distribution over the whole range is best left unclipped.
  MagnitudeHistogram flat;
  flat.range = 4.0f;
  flat.counts.assign(2048, 50.0);
  EXPECT_GT(runtime::calibration_threshold(flat, CalibrationMethod::entropy, 0, 127), 3.8f);
}

TEST(Calibration, MseBalancesRoundingAgainstClipping) {
  // Flat: clipping anything costs more than the finer rounding gains back.
  MagnitudeHistogram flat;
  flat.range = 4.0f;
  flat.counts.assign(2048, 50.0);
  EXPECT_GT(runtime::calibration_threshold(flat, CalibrationMethod::mse, 0, 127), 3.9f);
  // A million values below 1 and one at 100: err(T) = 1e6 (T / 127)^2 / 12 + (100 - T)^2 is least
  // at T = 100 / (1 + 1e6 / (6 * 127^2)) = 16.2.
  MagnitudeHistogram h;
  h.range = 100.0f;
  h.counts.assign(2048, 0.0);
  for (int k = 0; k < 20; ++k) h.counts[k] = 50000;
  h.counts[2047] = 1;
  const float t = runtime::calibration_threshold(h, CalibrationMethod::mse, 0, 127);
  std::printf("[calibration] mse threshold %.3f of range 100\n", t);
  EXPECT_NEAR(t, 16.2f, 0.2f);
}

// x -> Conv3x3 -> PRelu -> Conv1x1 -> Add(prelu output) -> depthwise Conv3x3 -> Relu -> Conv1x1 -> y
std::string small_net(const TempDir& dir, int opset = 13) {
  constexpr int64_t C = 8;
  OnnxBuilder m(opset);
  m.input("x", {-1, 3, 16, 16}).output("y");
  m.initializer("w1", {C, 3, 3, 3}, random_values(C * 27, 51, -0.4f, 0.4f)).initializer("b1", {C}, random_values(C, 52));
  m.initializer("slope", {C, 1, 1}, random_values(C, 53, 0.0f, 0.3f));
  m.initializer("w2", {C, C, 1, 1}, random_values(C * C, 54, -0.5f, 0.5f)).initializer("b2", {C}, random_values(C, 55));
  m.initializer("w3", {C, 1, 3, 3}, random_values(C * 9, 56, -0.5f, 0.5f));
  m.initializer("w4", {4, C, 1, 1}, random_values(4 * C, 57, -0.5f, 0.5f)).initializer("b4", {4}, random_values(4, 58));
  // Batch norms after conv1 and conv2 (an export without --fold-bn), some with negative scales: the
  // runtime folds them into the int8 convolutions' weight scales, signs and biases.
  auto batch_norm = [&](const std::string& in, const std::string& out, const std::string& name, uint32_t seed) {
    std::vector<float> gamma = random_values(C, seed, 0.5f, 1.5f);
    gamma[1] = -gamma[1];
    gamma[C - 2] = -gamma[C - 2];
    m.initializer(name + "_g", {C}, gamma).initializer(name + "_b", {C}, random_values(C, seed + 1));
    m.initializer(name + "_m", {C}, random_values(C, seed + 2)).initializer(name + "_v", {C}, random_values(C, seed + 3, 0.5f, 2.0f));
    m.node("BatchNormalization", {in, name + "_g", name + "_b", name + "_m", name + "_v"}, {out}, name);
  };
  auto& c1 = m.node("Conv", {"x", "w1", "b1"}, {"c1"}, "conv1");
  OnnxBuilder::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  batch_norm("c1", "n1", "bn1", 59);
  m.node("PRelu", {"n1", "slope"}, {"p1"}, "prelu1");
  m.node("Conv", {"p1", "w2", "b2"}, {"c2"}, "conv2");
  batch_norm("c2", "n2", "bn2", 63);
  m.node("Add", {"n2", "p1"}, {"s2"}, "add2");
  auto& c3 = m.node("Conv", {"s2", "w3"}, {"c3"}, "conv3_dw");
  OnnxBuilder::attr(c3, "pads", std::vector<int64_t>{1, 1, 1, 1});
  OnnxBuilder::attr(c3, "group", int64_t{C});
  m.node("Relu", {"c3"}, {"r3"}, "relu3");
  m.node("Conv", {"r3", "w4", "b4"}, {"y"}, "conv4");
  return m.save(dir.path() / "net.onnx");
}

std::vector<Tensor> calibration_batches(int count, uint32_t seed) {
  std::vector<Tensor> out;
  for (int k = 0; k < count; ++k) out.push_back({{4, 3, 16, 16}, random_values(4 * 3 * 16 * 16, seed + k, -1.0f, 1.0f)});
  return out;
}

double min_cosine(const Tensor& a, const Tensor& b) {
  const std::size_t per = static_cast<std::size_t>(a.numel() / a.shape[0]);
  double worst = 1;
  for (int64_t n = 0; n < a.shape[0]; ++n) worst = std::min(worst, cosine(a.data.data() + n * per, b.data.data() + n * per, per));
  return worst;
}

// The kernels of the steps planned for one node, in order.
std::vector<std::string> kernels_of(const std::vector<runtime::StepTiming>& steps, const std::string& node) {
  std::vector<std::string> out;
  for (const auto& step : steps) {
    if (step.node == node) out.push_back(step.kernel);
  }
  return out;
}

TEST(Quantize, WritesAQdqModelThatBothRuntimesRun) {
  REQUIRE_CPU_VNNI();
  TempDir dir;
  const std::string fp32_path = small_net(dir);
  const std::string out = dir.file("net.int8.onnx");
  for (CalibrationMethod method : {CalibrationMethod::minmax, CalibrationMethod::percentile, CalibrationMethod::entropy}) {
    runtime::QuantizeOptions o;
    o.method = method;
    o.threads = 2;
    const auto report = runtime::quantize_model(fp32_path, calibration_batches(6, 600), out, o);
    EXPECT_EQ(report.quantized_convs, (std::vector<std::string>{"conv1", "conv2", "conv3_dw", "conv4"}));
    EXPECT_TRUE(report.kept_fp32.empty());
    EXPECT_EQ(report.samples, 24);
    ASSERT_EQ(report.activations.size(), 4u);  // x, p1, s2, r3
    EXPECT_EQ(report.activations[0].value, "x");
    EXPECT_TRUE(report.activations[0].is_signed);
    EXPECT_FALSE(report.activations[3].is_signed);  // after ReLU: u8
    for (const auto& r : report.activations) {
      EXPECT_NEAR(r.scale, r.threshold / (r.is_signed ? 127 : 255), 1e-7) << r.value;
      EXPECT_LE(r.threshold, std::max(-r.min, r.max) * 1.0001f) << r.value;
    }
    const Tensor x{{3, 3, 16, 16}, random_values(3 * 3 * 16 * 16, 700, -1.0f, 1.0f)};  // not a calibration input
    const auto fp32 = Model::load(fp32_path, {.threads = 2}).run({x});
    const auto int8_model = Model::load(out, {.precision = Precision::int8, .threads = 2});
    std::vector<runtime::StepTiming> steps;
    const auto int8 = int8_model.new_session().run({x}, steps);
    for (const auto& step : steps) EXPECT_EQ(step.node.rfind("bn", 0), std::string::npos) << step.node << " was not folded";
    const auto qdq_fp32 = Model::load(out, {.precision = Precision::fp32, .threads = 2}).run({x});
    const double cos_int8 = min_cosine(int8[0], fp32[0]);
    std::printf("[quantize] %s: min cosine int8 vs fp32 %.5f, int8 vs QDQ-in-fp32 %.6f\n",
                runtime::to_string(method).c_str(), cos_int8, min_cosine(int8[0], qdq_fp32[0]));
    EXPECT_GE(cos_int8, 0.99);
    EXPECT_GE(min_cosine(int8[0], qdq_fp32[0]), 0.9999);
    const std::string why = ort_unavailable_reason();
    if (!why.empty()) {
      std::printf("SKIPPED the ONNX Runtime run: %s\n", why.c_str());
      continue;
    }
    const auto ort = run_onnxruntime(out, {x});
    const Difference d = compare(int8[0], ort[0]);
    std::printf("[quantize] ONNX Runtime vs arcforge int8: max abs diff %.3g of scale %.3g, min cosine %.6f\n",
                d.max_abs, d.scale, min_cosine(int8[0], ort[0]));
    EXPECT_GE(min_cosine(int8[0], ort[0]), 0.9999);
    EXPECT_LE(d.max_abs, 0.02 * d.scale);
  }
}

// An IResNet block as an int8 model runs it: pre-activation BN -> Q -> conv1 -> PReLU -> Q -> conv2,
// plus the identity. The runtime writes the quantized BN output and the PReLU + quantization after
// conv1 in one pass each (the quantizing loop, for slopes in [0, 1] and a negative one alike):
// both must agree with ONNX Runtime on the same QDQ file.
std::string iresnet_block_net(const TempDir& dir, bool negative_slope) {
  constexpr int64_t C = 16;
  OnnxBuilder m(13);
  m.input("x", {-1, C, 12, 12}).output("y");
  std::vector<float> slope = random_values(C, 71, 0.0f, 0.4f);
  slope[3] = 1.0f;  // the [0, 1] bounds included
  slope[5] = 0.0f;
  if (negative_slope) slope[7] = -0.2f;
  m.initializer("g", {C}, random_values(C, 72, 0.5f, 1.5f)).initializer("b", {C}, random_values(C, 73));
  m.initializer("mu", {C}, random_values(C, 74)).initializer("var", {C}, random_values(C, 75, 0.5f, 2.0f));
  m.initializer("w1", {C, C, 3, 3}, random_values(C * C * 9, 76, -0.2f, 0.2f));
  m.initializer("w2", {C, C, 3, 3}, random_values(C * C * 9, 77, -0.2f, 0.2f)).initializer("slope", {C, 1, 1}, slope);
  m.node("BatchNormalization", {"x", "g", "b", "mu", "var"}, {"n"}, "bn_pre");
  auto& c1 = m.node("Conv", {"n", "w1"}, {"c1"}, "conv1");
  OnnxBuilder::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  m.node("PRelu", {"c1", "slope"}, {"p"}, "prelu");
  auto& c2 = m.node("Conv", {"p", "w2"}, {"c2"}, "conv2");
  OnnxBuilder::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  m.node("Add", {"c2", "x"}, {"y"}, "residual");
  return m.save(dir.path() / (negative_slope ? "block_neg.onnx" : "block.onnx"));
}

TEST(Quantize, IResNetBlockFusesQuantizationIntoBatchNormAndPRelu) {
  REQUIRE_CPU_VNNI();
  // Steps planned for conv1 (input reorder, conv, post-ops), per slope variant and quantizing path.
  int conv1_steps[2][2] = {{0, 0}, {0, 0}};
  for (bool negative_slope : {false, true}) {
    TempDir dir;
    const std::string fp32_path = iresnet_block_net(dir, negative_slope);
    const std::string out = dir.file("block.int8.onnx");
    std::vector<Tensor> calib;
    for (uint32_t k = 0; k < 4; ++k) calib.push_back({{2, 16, 12, 12}, random_values(2 * 16 * 144, 780 + k, -2.0f, 2.0f)});
    runtime::QuantizeOptions o;
    o.threads = 2;
    const auto report = runtime::quantize_model(fp32_path, calib, out, o);
    EXPECT_EQ(report.quantized_convs, (std::vector<std::string>{"conv1", "conv2"}));
    const Tensor x{{3, 16, 12, 12}, random_values(3 * 16 * 144, 790, -2.0f, 2.0f)};
    const auto qdq_fp32 = Model::load(out, {.precision = Precision::fp32, .threads = 2}).run({x});
    const std::string why = ort_unavailable_reason();
    const auto ort = why.empty() ? run_onnxruntime(out, {x}) : std::vector<Tensor>{};
    // arcforge's quantizing loop (the default), then, with ARCFORGE_RUNTIME_QUANTIZE_LOOP=0, oneDNN:
    // one binary primitive for slopes in [0, 1], else the PReLU and a scaling reorder.
    for (const bool quantize_loop : {true, false}) {
      SCOPED_TRACE(std::string(negative_slope ? "negative slope" : "slopes in [0, 1]") +
                   (quantize_loop ? "" : ", ARCFORGE_RUNTIME_QUANTIZE_LOOP=0"));
      if (!quantize_loop) ::setenv("ARCFORGE_RUNTIME_QUANTIZE_LOOP", "0", 1);  // read when planning (the first run)
      const auto model = Model::load(out, {.precision = Precision::int8, .threads = 2});
      std::vector<runtime::StepTiming> steps;
      const auto int8 = model.new_session().run({x}, steps);
      ::unsetenv("ARCFORGE_RUNTIME_QUANTIZE_LOOP");
      // The quantizations of n (after the BN) and of p (after the PReLU) have no step of their own
      // where the one-pass forms apply: the BN always, the PReLU when no slope is negative.
      int quantize_steps = 0;
      for (const auto& step : steps) quantize_steps += step.node.find("QuantizeLinear") != std::string::npos;
      EXPECT_EQ(quantize_steps, 0);
      for (const auto& step : steps) conv1_steps[quantize_loop][negative_slope] += step.node == "conv1";
      const std::vector<std::string> conv1 = kernels_of(steps, "conv1");
      ASSERT_FALSE(conv1.empty());
      if (quantize_loop) {
        EXPECT_EQ(conv1.back(), "loop:quantize") << "PReLU and quantization in one loop";
      } else {
        EXPECT_EQ(std::count(conv1.begin(), conv1.end(), "loop:quantize"), 0);
      }
      EXPECT_GE(min_cosine(int8[0], qdq_fp32[0]), 0.9999);
      if (!why.empty()) {
        std::printf("SKIPPED the ONNX Runtime run: %s\n", why.c_str());
        continue;
      }
      const Difference d = compare(int8[0], ort[0]);
      std::printf("[quantize] IResNet block%s%s: ONNX Runtime vs arcforge int8 max abs diff %.3g of scale %.3g\n",
                  negative_slope ? " (a negative slope)" : "", quantize_loop ? "" : " (oneDNN quantizing)", d.max_abs,
                  d.scale);
      EXPECT_LE(d.max_abs, 1e-3 * d.scale);
    }
  }
  EXPECT_EQ(conv1_steps[1][1], conv1_steps[1][0]) << "the loop: PReLU and quantization in one pass";
  EXPECT_EQ(conv1_steps[0][0], conv1_steps[1][0]) << "oneDNN's binary: PReLU and quantization in one pass";
  EXPECT_EQ(conv1_steps[0][1], conv1_steps[1][0] + 1) << "a negative slope: the PReLU, then a scaling reorder";
}

// A MobileFaceNet block as `--keep-fp32 depthwise` quantizes it: Q -> expand (1x1) -> PReLU ->
// depthwise 3x3 in float -> PReLU -> Q -> project (1x1), plus the identity. The depthwise conv's
// PReLU (slopes negative, in [0, 1] and above 1) runs in the quantizing pass after it: no step of
// its own, no QuantizeLinear step; under int8+bf16 the expand conv writes bf16, the depthwise conv
// runs in bf16 and the pass reads bf16.
// `per_group` 2: the depthwise conv in groups of two channels (InsightFace's MobileFaceNet at scale 2).
std::string mobilefacenet_block_net(const TempDir& dir, int64_t per_group = 1) {
  constexpr int64_t C = 16, E = 32;
  OnnxBuilder m(13);
  m.input("x", {-1, C, 10, 10}).output("y");
  std::vector<float> slope2 = random_values(E, 83, 0.0f, 0.5f);
  slope2[2] = -0.3f;
  slope2[9] = 1.7f;
  m.initializer("we", {E, C, 1, 1}, random_values(E * C, 81, -0.3f, 0.3f)).initializer("be", {E}, random_values(E, 82));
  m.initializer("s1", {E, 1, 1}, random_values(E, 84, 0.0f, 0.4f)).initializer("s2", {E, 1, 1}, slope2);
  m.initializer("wd", {E, per_group, 3, 3}, random_values(E * 9 * per_group, 85, -0.5f, 0.5f));
  m.initializer("bd", {E}, random_values(E, 86));
  m.initializer("wp", {C, E, 1, 1}, random_values(C * E, 87, -0.3f, 0.3f));
  m.node("Conv", {"x", "we", "be"}, {"e"}, "expand");
  m.node("PRelu", {"e", "s1"}, {"pe"}, "prelu_e");
  auto& dw = m.node("Conv", {"pe", "wd", "bd"}, {"d"}, "dw");
  OnnxBuilder::attr(dw, "pads", std::vector<int64_t>{1, 1, 1, 1});
  OnnxBuilder::attr(dw, "group", int64_t{E / per_group});
  m.node("PRelu", {"d", "s2"}, {"pd"}, "prelu_d");
  m.node("Conv", {"pd", "wp"}, {"p"}, "project");
  m.node("Add", {"p", "x"}, {"y"}, "residual");
  return m.save(dir.path() / ("mbf_block" + std::to_string(per_group) + ".onnx"));
}

// The block above quantized with `--keep-fp32 depthwise`: its expand and project convs in int8, the
// depthwise conv kept. Returns the QDQ file.
std::string quantize_mobilefacenet_block(const TempDir& dir, int64_t per_group) {
  const std::string out = dir.file("mbf_block" + std::to_string(per_group) + ".int8.onnx");
  std::vector<Tensor> calib;
  for (uint32_t k = 0; k < 4; ++k) {
    calib.push_back({{2, 16, 10, 10}, random_values(2 * 16 * 100, 880 + k, -2.0f, 2.0f)});
  }
  runtime::QuantizeOptions o;
  o.threads = 2;
  o.keep_fp32 = {"depthwise"};
  const auto report = runtime::quantize_model(mobilefacenet_block_net(dir, per_group), calib, out, o);
  EXPECT_EQ(report.quantized_convs, (std::vector<std::string>{"expand", "project"}));
  EXPECT_EQ(report.kept_fp32, (std::vector<std::string>{"dw"}));
  return out;
}

// An input that is not among the calibration batches.
Tensor mobilefacenet_block_input() { return {{3, 16, 10, 10}, random_values(3 * 16 * 100, 890, -2.0f, 2.0f)}; }

TEST(Quantize, KeptDepthwiseConvQuantizesWithItsPReLUInOnePass) {
  REQUIRE_CPU_VNNI();
  TempDir dir;
  const std::string out = quantize_mobilefacenet_block(dir, 1);
  const Tensor x = mobilefacenet_block_input();
  const auto qdq_fp32 = Model::load(out, {.precision = Precision::fp32, .threads = 2}).run({x});
  const std::string why = ort_unavailable_reason();
  const auto ort = why.empty() ? run_onnxruntime(out, {x}) : std::vector<Tensor>{};
  std::vector<Precision> precisions = {Precision::int8};
  if (runtime::cpu_runs_bf16()) precisions.push_back(Precision::int8_bf16);
  // arcforge's depthwise loop (the default) does the conv, its PReLU and the quantization in one
  // pass; with ARCFORGE_RUNTIME_DEPTHWISE=0 oneDNN's conv, then the quantizing loop with the PReLU;
  // with ARCFORGE_RUNTIME_QUANTIZE_LOOP=0 too, oneDNN's conv and oneDNN's binary primitive (or, on
  // bf16 data, the PReLU and a scaling reorder).
  enum class Path { depthwise_loop, quantize_loop, onednn };
  for (const Path path : {Path::depthwise_loop, Path::quantize_loop, Path::onednn}) {
    for (const Precision p : precisions) {
      const char* what = path == Path::depthwise_loop  ? ""
                         : path == Path::quantize_loop ? " (oneDNN depthwise)"
                                                       : " (oneDNN depthwise and quantizing)";
      SCOPED_TRACE(to_string(p) + what);
      // Both read when planning (the first run).
      if (path != Path::depthwise_loop) ::setenv("ARCFORGE_RUNTIME_DEPTHWISE", "0", 1);
      if (path == Path::onednn) ::setenv("ARCFORGE_RUNTIME_QUANTIZE_LOOP", "0", 1);
      const auto model = Model::load(out, {.precision = p, .threads = 2});
      std::vector<runtime::StepTiming> steps;
      const auto int8 = model.new_session().run({x}, steps);
      ::unsetenv("ARCFORGE_RUNTIME_DEPTHWISE");
      ::unsetenv("ARCFORGE_RUNTIME_QUANTIZE_LOOP");
      EXPECT_TRUE(kernels_of(steps, "pd_QuantizeLinear").empty());
      EXPECT_TRUE(kernels_of(steps, "prelu_d").empty());
      const std::vector<std::string> dw = kernels_of(steps, "dw");
      ASSERT_FALSE(dw.empty());
      const std::vector<std::string> x_quantize = kernels_of(steps, "x_QuantizeLinear");
      if (path == Path::depthwise_loop) {
        EXPECT_EQ(dw, std::vector<std::string>{"loop:depthwise"}) << "conv, PReLU and quantization in one loop";
      } else if (path == Path::quantize_loop) {
        EXPECT_EQ(dw.back(), "loop:quantize") << "the depthwise conv's PReLU and the quantization in one loop";
      } else {
        EXPECT_EQ(std::count(dw.begin(), dw.end(), "loop:quantize"), 0);
        EXPECT_EQ(std::count(x_quantize.begin(), x_quantize.end(), "loop:quantize"), 0);
      }
      if (p == Precision::int8_bf16 && path == Path::quantize_loop) {
        // The conv itself and the loop, no conversion before: the expand conv wrote bf16.
        ASSERT_EQ(dw.size(), 2u) << dw.front();
        EXPECT_NE(dw.front().find("bf16"), std::string::npos) << dw.front();
      }
      if (path != Path::onednn) {
        EXPECT_EQ(x_quantize, std::vector<std::string>{"loop:quantize"});
      }
      EXPECT_GE(min_cosine(int8[0], qdq_fp32[0]), 0.9999);
      if (!why.empty()) {
        std::printf("SKIPPED the ONNX Runtime run: %s\n", why.c_str());
        continue;
      }
      const Difference d = compare(int8[0], ort[0]);
      std::printf("[quantize] MobileFaceNet block, %s%s: ONNX Runtime vs arcforge max abs diff %.3g of scale "
                  "%.3g, min cosine %.6f\n", to_string(p).c_str(), what,
                  d.max_abs, d.scale, min_cosine(int8[0], ort[0]));
      if (p == Precision::int8) EXPECT_LE(d.max_abs, 1e-3 * d.scale);
      else EXPECT_GE(min_cosine(int8[0], ort[0]), 0.999);  // bf16 activations: ~3 significant digits
    }
  }
}

// `--keep-fp32 depthwise` keeps a conv of two channels per group too, and the depthwise loop runs it
// with its PReLU and the quantization for the next int8 conv, matching ONNX Runtime.
TEST(Quantize, KeptGroupsOfTwoChannelsRunOnTheDepthwiseLoop) {
  REQUIRE_CPU_VNNI();
  TempDir dir;
  const std::string out = quantize_mobilefacenet_block(dir, 2);
  const Tensor x = mobilefacenet_block_input();
  std::vector<runtime::StepTiming> steps;
  const auto int8 = Model::load(out, {.precision = Precision::int8, .threads = 2}).new_session().run({x}, steps);
  EXPECT_EQ(kernels_of(steps, "dw"), std::vector<std::string>{"loop:depthwise"});
  const std::string why = ort_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "SKIPPED the ONNX Runtime run: " << why;
  const auto ort = run_onnxruntime(out, {x});
  const Difference d = compare(int8[0], ort[0]);
  std::printf("[quantize] MobileFaceNet block, two channels per group: ONNX Runtime vs arcforge max abs diff %.3g "
              "of scale %.3g\n", d.max_abs, d.scale);
  EXPECT_LE(d.max_abs, 1e-3 * d.scale);
}

TEST(Quantize, KeepsFirstAndLastInFp32AndRaisesOldOpsets) {
  TempDir dir;
  const std::string fp32_path = small_net(dir, 9);
  runtime::QuantizeOptions o;
  o.keep_fp32 = {"first", "last"};
  const auto report = runtime::quantize_model(fp32_path, calibration_batches(2, 800), dir.file("q.onnx"), o);
  EXPECT_EQ(report.quantized_convs, (std::vector<std::string>{"conv2", "conv3_dw"}));
  EXPECT_EQ(report.kept_fp32, (std::vector<std::string>{"conv1", "conv4"}));
  EXPECT_EQ(report.opset_from, 9);
  EXPECT_EQ(report.opset_to, 13);
  EXPECT_EQ(report.bias_corrected, (std::vector<std::string>{"conv2", "conv3_dw"}));
  const auto m = Model::load(dir.file("q.onnx"), {.precision = Precision::int8});
  // Two activations, two weights, conv2's bias and the one bias correction gave conv3_dw.
  EXPECT_EQ(m.op_histogram().at("DequantizeLinear"), 6);
  EXPECT_EQ(m.op_histogram().at("QuantizeLinear"), 2);
}

// Bias correction: on the calibration data, the mean of (QDQ output - fp32 output) per output
// channel is what quantization shifts; the corrected bias cancels it. Inputs with channel means far
// from 0 and a skewed tail that the mse range clips. A 1x1 convolution with two groups (every
// input position feeds every output position: exact up to the int32 bias rounding), and a padded
// strided 3x3 one (its border taps read zero padding on a third of the output rows and columns;
// the correction weights each tap by where it reads inside).
TEST(Quantize, BiasCorrectionCancelsTheMeanShiftOnTheCalibrationData) {
  REQUIRE_CPU_VNNI();
  constexpr int64_t C = 8, OC = 6;
  struct Case {
    const char* name;
    int64_t kernel, group, stride, pad;
    double bound;  // on the largest per-channel mean shift left, as a fraction of the uncorrected one
  };
  // 3x3: what is left comes from the sampled statistics differing between tap windows; ignoring the
  // padding would leave more than the uncorrected shift (0.0177 against 0.0157).
  for (const Case& k : {Case{"1x1, 2 groups", 1, 2, 1, 0, 0.01}, Case{"3x3 stride 2 pad 1", 3, 1, 2, 1, 0.25}}) {
    TempDir dir;
    OnnxBuilder m(13);
    m.input("x", {-1, C, 6, 6}).output("y");
    const int64_t per = C / k.group * k.kernel * k.kernel;
    m.initializer("w", {OC, C / k.group, k.kernel, k.kernel}, random_values(OC * per, 91, -0.8f, 0.8f));
    m.initializer("b", {OC}, random_values(OC, 92));
    auto& conv = m.node("Conv", {"x", "w", "b"}, {"y"}, "conv");
    OnnxBuilder::attr(conv, "group", k.group);
    OnnxBuilder::attr(conv, "strides", std::vector<int64_t>{k.stride, k.stride});
    OnnxBuilder::attr(conv, "pads", std::vector<int64_t>{k.pad, k.pad, k.pad, k.pad});
    const std::string fp32_path = m.save(dir.path() / "conv.onnx");
    std::vector<Tensor> calib;
    for (uint32_t b = 0; b < 4; ++b) {
      Tensor t{{3, C, 6, 6}, random_values(3 * C * 36, 930 + b, 0.0f, 1.0f)};
      for (std::size_t j = 0; j < t.data.size(); ++j) {
        const std::size_t c = (j / 36) % C;
        t.data[j] = t.data[j] * t.data[j] * (1.0f + static_cast<float>(c));
      }
      calib.push_back(t);
    }
    const Model fp32 = Model::load(fp32_path, {.threads = 2});
    auto mean_shift = [&](const std::string& qdq_path) {  // the largest per output channel, in double
      const Model q = Model::load(qdq_path, {.threads = 2});
      std::vector<double> shift(OC, 0.0);
      double count = 0;
      for (const Tensor& t : calib) {
        const auto a = q.run({t}), f = fp32.run({t});
        const std::size_t spatial = a[0].data.size() / static_cast<std::size_t>(a[0].shape[0] * OC);
        for (std::size_t j = 0; j < a[0].data.size(); ++j) {
          shift[(j / spatial) % OC] += static_cast<double>(a[0].data[j]) - f[0].data[j];
        }
        count += static_cast<double>(a[0].data.size()) / OC;
      }
      double worst = 0;
      for (double v : shift) worst = std::max(worst, std::abs(v / count));
      return worst;
    };
    runtime::QuantizeOptions o;
    o.threads = 2;
    o.bias_correction = false;
    runtime::quantize_model(fp32_path, calib, dir.file("plain.onnx"), o);
    o.bias_correction = true;
    const auto report = runtime::quantize_model(fp32_path, calib, dir.file("corrected.onnx"), o);
    EXPECT_EQ(report.bias_corrected, (std::vector<std::string>{"conv"}));
    const double before = mean_shift(dir.file("plain.onnx")), after = mean_shift(dir.file("corrected.onnx"));
    std::printf("[quantize] %s: largest per-channel mean shift %.3g without bias correction, %.3g with\n", k.name,
                before, after);
    EXPECT_GT(before, 1e-2) << k.name;
    EXPECT_LT(after, k.bound * before) << k.name;
    // The int8 convolution reads the corrected bias too.
    const Tensor x = calib[0];
    const auto int8 = Model::load(dir.file("corrected.onnx"), {.precision = Precision::int8, .threads = 2}).run({x});
    const auto qdq = Model::load(dir.file("corrected.onnx"), {.threads = 2}).run({x});
    EXPECT_LE(compare(int8[0], qdq[0]).max_abs, 1e-4 * compare(int8[0], qdq[0]).scale) << k.name;
  }
}

// small_net quantized with only conv1 in int8 (conv2, the depthwise conv3_dw and the last kept in
// float), as dir/q.onnx.
std::string small_net_int8_conv1_only(TempDir& dir, uint32_t seed) {
  runtime::QuantizeOptions o;
  o.keep_fp32 = {"conv2", "conv3_dw", "last"};
  o.threads = 2;
  const std::string q = dir.file("q.onnx");
  const auto report = runtime::quantize_model(small_net(dir), calibration_batches(4, seed), q, o);
  EXPECT_EQ(report.quantized_convs, (std::vector<std::string>{"conv1"}));
  return q;
}

// int8+bf16: the convolutions kept in float, the depthwise one included, run in bf16 where oneDNN
// has a native bf16 kernel; the int8 ones are unchanged.
TEST(Quantize, Int8WithBf16RunsTheKeptConvolutionsInBf16) {
  REQUIRE_CPU_BF16();
  TempDir dir;
  const std::string q = small_net_int8_conv1_only(dir, 960);
  const std::string fp32_path = small_net(dir);
  const Tensor x{{3, 3, 16, 16}, random_values(3 * 3 * 16 * 16, 961, -1.0f, 1.0f)};
  auto kernels = [&](const std::string& path, Precision p, std::vector<Tensor>& out) {
    std::map<std::string, std::string> by_node;  // node -> the convolution's oneDNN kernel
    std::vector<runtime::StepTiming> steps;
    out = Model::load(path, {.precision = p, .threads = 2}).new_session().run({x}, steps);
    for (const auto& s : steps) {
      const bool conv_kernel = s.kernel.find("conv") != std::string::npos || s.kernel.find("dw") != std::string::npos ||
                               s.kernel.find("int8") != std::string::npos;
      if (conv_kernel) by_node[s.node] = s.kernel;
    }
    return by_node;
  };
  std::vector<Tensor> int8, mixed, bf16_plain, qdq;
  const auto k_int8 = kernels(q, Precision::int8, int8);
  const auto k_mixed = kernels(q, Precision::int8_bf16, mixed);
  const auto k_bf16 = kernels(fp32_path, Precision::bf16, bf16_plain);
  kernels(q, Precision::fp32, qdq);
  for (const auto& [node, kernel] : k_mixed) std::printf("[int8+bf16] %s: %s\n", node.c_str(), kernel.c_str());
  ASSERT_TRUE(k_mixed.count("conv1") && k_mixed.count("conv2") && k_mixed.count("conv3_dw") && k_mixed.count("conv4"));
  EXPECT_EQ(k_mixed.at("conv1"), k_int8.at("conv1"));
  EXPECT_EQ(k_int8.at("conv2").find("bf16"), std::string::npos) << k_int8.at("conv2");
  for (const char* node : {"conv2", "conv3_dw", "conv4"}) {
    // Where plain bf16 finds a native kernel for this convolution, int8+bf16 uses it.
    if (k_bf16.count(node) && k_bf16.at(node).find("bf16") != std::string::npos) {
      EXPECT_NE(k_mixed.at(node).find("bf16"), std::string::npos) << node << ": " << k_mixed.at(node);
    }
  }
  EXPECT_GE(min_cosine(mixed[0], qdq[0]), 0.999);
  EXPECT_GE(min_cosine(mixed[0], int8[0]), 0.999);
}

// "int8+auto" resolves at load to int8+bf16 where bf16 outpaces fp32 and to int8 elsewhere, and
// runs as the precision it names; like int8, it needs a QDQ model.
TEST(Quantize, Int8AutoLoadsAsInt8WithBf16WhereBf16IsFaster) {
  EXPECT_EQ(runtime::parse_precision("int8+auto"), Precision::int8_automatic);
  EXPECT_EQ(runtime::to_string(Precision::int8_automatic), "int8+auto");
  EXPECT_TRUE(runtime::runs_int8(Precision::int8_automatic));
  const Precision chosen = runtime::cpu_bf16_outpaces_fp32() ? Precision::int8_bf16 : Precision::int8;
  EXPECT_EQ(runtime::effective_precision(Precision::int8_automatic), chosen);
  TempDir dir;
  const std::string q = small_net_int8_conv1_only(dir, 970);
  const std::string fp32_path = small_net(dir);
  const Model automatic = Model::load(q, {.precision = Precision::int8_automatic, .threads = 2});
  EXPECT_EQ(automatic.options().precision, chosen);
  const Tensor x{{2, 3, 16, 16}, random_values(2 * 3 * 16 * 16, 971, -1.0f, 1.0f)};
  const Model named = Model::load(q, {.precision = chosen, .threads = 2});
  EXPECT_EQ(automatic.new_session().run({x}).at(0).data, named.new_session().run({x}).at(0).data);
  EXPECT_THROW(Model::load(fp32_path, {.precision = Precision::int8_automatic, .threads = 2}), InputError);
}

// A ViT-style MLP with int8 Gemms: x -> Gemm (transB 1, C) -> Clip(0, 6) -> Gemm (transB 0, no C)
// -> Add(x) -> Gemm (C of one value). Quantized with op_types {"Gemm"}, the runtime runs the three
// as int8 inner products (the activations' DequantizeLinear and the Clip's QuantizeLinear fused),
// and agrees with ONNX Runtime on the same QDQ file; bias correction covers both weight layouts.
TEST(Quantize, GemmsRunAsInt8InnerProducts) {
  REQUIRE_CPU_VNNI();
  constexpr int64_t K = 24, H = 40;
  TempDir dir;
  OnnxBuilder m(13);
  m.input("x", {-1, K}).output("y");
  m.initializer("w1", {H, K}, random_values(H * K, 1001, -0.3f, 0.3f)).initializer("b1", {H}, random_values(H, 1002));
  m.initializer("w2", {H, K}, random_values(H * K, 1003, -0.3f, 0.3f));  // [K_in = H, N = K]: transB 0
  m.initializer("w3", {8, K}, random_values(8 * K, 1004, -0.3f, 0.3f)).initializer("b3", {1}, {0.25f});
  m.initializer("lo", {}, {0.0f}).initializer("hi", {}, {6.0f});
  OnnxBuilder::attr(m.node("Gemm", {"x", "w1", "b1"}, {"h"}, "fc1"), "transB", int64_t{1});
  m.node("Clip", {"h", "lo", "hi"}, {"a"}, "relu6");
  m.node("Gemm", {"a", "w2"}, {"g"}, "fc2");
  m.node("Add", {"x", "g"}, {"r"}, "residual");
  OnnxBuilder::attr(m.node("Gemm", {"r", "w3", "b3"}, {"y"}, "head"), "transB", int64_t{1});
  const std::string fp32_path = m.save(dir.path() / "mlp.onnx");
  std::vector<Tensor> calib;
  for (uint32_t k = 0; k < 4; ++k) calib.push_back({{16, K}, random_values(16 * K, 1010 + k, -2.0f, 2.0f)});
  runtime::QuantizeOptions o;
  o.op_types = {"Gemm"};
  o.threads = 2;
  const std::string q = dir.file("mlp.int8.onnx");
  const auto report = runtime::quantize_model(fp32_path, calib, q, o);
  EXPECT_EQ(report.quantized_convs, (std::vector<std::string>{"fc1", "fc2", "head"}));
  EXPECT_EQ(report.bias_corrected, (std::vector<std::string>{"fc1", "fc2", "head"}));
  ASSERT_EQ(report.activations.size(), 3u);
  EXPECT_FALSE(report.activations[1].is_signed) << "after ReLU6: u8";

  const Tensor x{{5, K}, random_values(5 * K, 1020, -2.0f, 2.0f)};
  const auto model = Model::load(q, {.precision = Precision::int8, .threads = 2});
  std::vector<runtime::StepTiming> steps;
  const auto int8 = model.new_session().run({x}, steps);
  int quantize_steps = 0, dequantize_steps = 0;
  for (const auto& step : steps) {
    dequantize_steps += step.node.find("DequantizeLinear") != std::string::npos;
    quantize_steps += step.node.find("QuantizeLinear") != std::string::npos && step.node.find("Dequantize") == std::string::npos;
  }
  EXPECT_EQ(dequantize_steps, 0) << "every Gemm reads its int8 input directly";
  EXPECT_EQ(quantize_steps, 2) << "x and r are quantized by steps of their own; the ReLU6 output by fc1";
  const auto qdq_fp32 = Model::load(q, {.threads = 2}).run({x});
  const auto fp32 = Model::load(fp32_path, {.threads = 2}).run({x});
  std::printf("[quantize] int8 Gemms: min cosine to fp32 %.5f, to the QDQ file in fp32 %.7f\n",
              min_cosine(int8[0], fp32[0]), min_cosine(int8[0], qdq_fp32[0]));
  EXPECT_GE(min_cosine(int8[0], fp32[0]), 0.99);
  EXPECT_LE(compare(int8[0], qdq_fp32[0]).max_abs, 1e-4 * compare(int8[0], qdq_fp32[0]).scale);
  const std::string why = ort_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "SKIPPED the ONNX Runtime run: " << why;
  const auto ort = run_onnxruntime(q, {x});
  const Difference d = compare(int8[0], ort[0]);
  std::printf("[quantize] int8 Gemms: ONNX Runtime vs arcforge max abs diff %.3g of scale %.3g\n", d.max_abs, d.scale);
  EXPECT_LE(d.max_abs, 1e-4 * d.scale);
}

TEST(Quantize, ErrorsNameTheFile) {
  TempDir dir;
  const std::string fp32_path = small_net(dir);
  runtime::QuantizeOptions o;
  o.keep_fp32 = {"no_such_conv"};
  try {
    runtime::quantize_model(fp32_path, calibration_batches(1, 900), dir.file("q.onnx"), o);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(fp32_path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no_such_conv"), std::string::npos) << e.what();
  }
  // Only Conv and Gemm can be quantized.
  runtime::QuantizeOptions softmax;
  softmax.op_types = {"Conv", "Softmax"};
  EXPECT_THROW(runtime::quantize_model(fp32_path, calibration_batches(1, 901), dir.file("q.onnx"), softmax), ConfigError);
  // Opset 9 with an operator whose meaning changed before 13 (Softmax) cannot be raised.
  OnnxBuilder m(9);
  m.input("x", {1, 2, 4, 4}).output("y").initializer("w", {2, 2, 1, 1}, {1, 0, 0, 1});
  m.node("Conv", {"x", "w"}, {"c"});
  m.node("Softmax", {"c"}, {"y"});
  const std::string old = m.save(dir.path() / "old.onnx");
  EXPECT_THROW(runtime::quantize_model(old, {Tensor{{1, 2, 4, 4}, random_values(32, 1)}}, dir.file("o.onnx"), {}),
               InputError);
  EXPECT_FALSE(std::filesystem::exists(dir.file("o.onnx")));
  // Clip: with its bounds as inputs (opset 11) it means what it does at 13, and the model is
  // raised; with bounds as attributes (opset 6) it is refused.
  for (int64_t opset : {11, 6}) {
    OnnxBuilder c(opset);
    c.input("x", {1, 2, 4, 4}).output("y").initializer("w", {2, 2, 1, 1}, {1, 0, 0, 1});
    c.node("Conv", {"x", "w"}, {"c"});
    if (opset >= 11) {
      c.initializer("lo", {}, {0.0f}).initializer("hi", {}, {6.0f});
      c.node("Clip", {"c", "lo", "hi"}, {"y"});
    } else {
      auto& clip = c.node("Clip", {"c"}, {"y"});
      OnnxBuilder::attr(clip, "min", 0.0f);
      OnnxBuilder::attr(clip, "max", 6.0f);
    }
    const std::string path = c.save(dir.path() / ("clip" + std::to_string(opset) + ".onnx"));
    const std::string out = dir.file("clip_q" + std::to_string(opset) + ".onnx");
    const std::vector<Tensor> calib = {Tensor{{1, 2, 4, 4}, random_values(32, 2)}};
    if (opset >= 11) {
      EXPECT_EQ(runtime::quantize_model(path, calib, out, {}).opset_to, 13);
    } else {
      EXPECT_THROW(runtime::quantize_model(path, calib, out, {}), InputError);
      EXPECT_FALSE(std::filesystem::exists(out));
    }
  }
}

std::string capture(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  *rc = p ? pclose(p) : -1;
  return out;
}

TEST(Quantize, CliOnAFolderOfImagesThenBenchModelInEveryPrecision) {
  TempDir dir;
  const std::string fp32_path = small_net(dir);
  std::filesystem::create_directories(dir.path() / "faces");
  const auto noise = random_values(20 * 20 * 20 * 3, 77, 0.0f, 255.0f);
  for (int k = 0; k < 20; ++k) {
    // 20x20 images: center-cropped to the model's 16x16. One 8x8 image is skipped.
    image::Image img(20, 20, 3);
    for (std::size_t j = 0; j < img.pixels.size(); ++j) img.pixels[j] = static_cast<uint8_t>(noise[k * img.pixels.size() + j]);
    std::string name = "f";  // built piecewise: GCC 12 warns (-Wrestrict, a false positive) on "f" + string
    name += std::to_string(100 + k);
    name += ".png";
    image::write_png((dir.path() / "faces" / name).string(), img);
  }
  image::write_png((dir.path() / "faces" / "small.png").string(), image::Image(8, 8, 3));
  int rc = 0;
  const std::string q = dir.file("net.int8.onnx");
  const std::string out = capture(std::string(ARCFORGE_CLI) + " quantize " + fp32_path + " --calib " +
                                      dir.file("faces") + " --out " + q +
                                      " --method entropy --samples 12 --batch 5 --mean 127.5 --std 64 --bgr "
                                      "--keep-fp32 conv4 --json --threads 1",
                                  &rc);
  ASSERT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(j.at("samples"), 12);
  EXPECT_EQ(j.at("skipped_images"), 0);  // 12 were enough before reaching small.png
  EXPECT_EQ(j.at("method"), "entropy");
  EXPECT_EQ(j.at("quantized_convs"), 3);
  EXPECT_EQ(j.at("kept_fp32"), (std::vector<std::string>{"conv4"}));
  EXPECT_EQ(j.at("bias_corrected"), 3);
  EXPECT_EQ(j.at("activations").size(), 3u);
  for (const char* p : {"fp32", "bf16", "int8", "int8+bf16"}) {
    const std::string bench = capture(std::string(ARCFORGE_CLI) + " bench-model " + q + " --precision " + p +
                                          " --batch 2 --threads 1 --repeats 3 --json",
                                      &rc);
    ASSERT_EQ(rc, 0) << bench;
    const auto b = nlohmann::json::parse(bench.substr(bench.find('{')));  // after any warning on stderr
    EXPECT_EQ(b.at("requested_precision"), p);
    EXPECT_EQ(b.at("precision"), runtime::to_string(runtime::effective_precision(runtime::parse_precision(p))));
    EXPECT_GT(b.at("images_per_s").get<double>(), 0.0);
    const bool warned = bench.find(q + ": this CPU has no VNNI") != std::string::npos;
    EXPECT_EQ(warned, runtime::runs_int8(runtime::parse_precision(p)) && !runtime::cpu_has_int8_dot_product()) << bench;
  }
  // Where oneDNN is capped at AVX2 (no VNNI), int8 runs and says what that costs, naming the model.
  const std::string avx2 = capture("ONEDNN_MAX_CPU_ISA=AVX2 " + std::string(ARCFORGE_CLI) + " bench-model " + q +
                                       " --precision int8 --batch 2 --threads 1 --repeats 2 --json",
                                   &rc);
  ASSERT_EQ(rc, 0) << avx2;
  EXPECT_NE(avx2.find(q + ": this CPU has no VNNI"), std::string::npos) << avx2;
  EXPECT_NE(avx2.find("7 bits"), std::string::npos) << avx2;
  // A missing calibration source is one clear line naming it.
  const std::string bad = capture(std::string(ARCFORGE_CLI) + " quantize " + fp32_path + " --calib " +
                                      dir.file("nothing.rec") + " --out " + dir.file("x.onnx"),
                                  &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(bad.find("nothing"), std::string::npos) << bad;
}

TEST(FaceInput, CropsAndNormalisesInTheModelsChannelOrder) {
  image::Image img(4, 2, 3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = static_cast<uint8_t>(10 * x + y + 100 * c);
  runtime::Preprocess p;
  p.mean = {1, 2, 3};
  p.std = {2, 4, 8};
  p.bgr = true;
  const Tensor t = runtime::faces_to_tensor({img}, p);
  ASSERT_EQ(t.shape, (std::vector<int64_t>{1, 3, 2, 4}));
  // Channel 0 is blue (source channel 2) with mean[0] and std[0].
  EXPECT_FLOAT_EQ(t.data[0 * 8 + 1 * 4 + 3], (10 * 3 + 1 + 200 - 1.0f) / 2.0f);
  EXPECT_FLOAT_EQ(t.data[2 * 8 + 0 * 4 + 2], (10 * 2 + 0 + 0 - 3.0f) / 8.0f);
}

}  // namespace
}  // namespace arcforge::test
