// Single operators and shape arithmetic on tiny models, each against a double-precision reference
// written here.
#include <gtest/gtest.h>

#include <thread>

#include "arcforge/runtime/model.hpp"
#include "onnx_builder.hpp"
#include "reference_ops.hpp"

namespace arcforge::test {
namespace {

using runtime::Model;
using runtime::Tensor;
using Vec = ref::Vec;

Tensor random_tensor(std::vector<int64_t> shape, uint32_t seed, float lo = -1, float hi = 1) {
  Tensor t{std::move(shape), {}};
  t.data = random_values(static_cast<std::size_t>(t.numel()), seed, lo, hi);
  return t;
}

void expect_close(const Tensor& got, const std::vector<int64_t>& shape, const Vec& want, double tol = 1e-5) {
  ASSERT_EQ(got.shape, shape);
  EXPECT_LE(ref::max_abs_diff(got.data, want), tol * std::max(1.0, ref::max_abs(want)));
}

TEST(Ops, MaxAndAveragePoolWithCeilModeAndPads) {
  TempDir dir;
  OnnxBuilder m(11);
  m.input("x", {1, 2, 7, 7}).output("mx").output("av").output("g");
  auto& mp = m.node("MaxPool", {"x"}, {"mx"});
  OnnxBuilder::attr(mp, "kernel_shape", std::vector<int64_t>{3, 3});
  OnnxBuilder::attr(mp, "strides", std::vector<int64_t>{2, 2});
  OnnxBuilder::attr(mp, "pads", std::vector<int64_t>{1, 1, 0, 0});
  OnnxBuilder::attr(mp, "ceil_mode", int64_t{1});
  auto& ap = m.node("AveragePool", {"x"}, {"av"});
  OnnxBuilder::attr(ap, "kernel_shape", std::vector<int64_t>{2, 2});
  OnnxBuilder::attr(ap, "strides", std::vector<int64_t>{2, 2});
  OnnxBuilder::attr(ap, "ceil_mode", int64_t{1});
  m.node("GlobalAveragePool", {"x"}, {"g"});
  const Model model = Model::load(m.save(dir.path() / "m.onnx"), {.threads = 2});
  const Tensor x = random_tensor({1, 2, 7, 7}, 3);
  const auto out = model.run({x});
  auto at = [&](int64_t c, int64_t i, int64_t j) { return static_cast<double>(x.data[(c * 7 + i) * 7 + j]); };
  // MaxPool: out = ceil((7 + 1 - 3) / 2) + 1 = 4; windows start at -1, 1, 3, 5.
  Vec mx, av, g;
  for (int64_t c = 0; c < 2; ++c) {
    for (int64_t oi = 0; oi < 4; ++oi)
      for (int64_t oj = 0; oj < 4; ++oj) {
        double best = -INFINITY;
        for (int64_t i = oi * 2 - 1; i < oi * 2 + 2; ++i)
          for (int64_t j = oj * 2 - 1; j < oj * 2 + 2; ++j)
            if (i >= 0 && i < 7 && j >= 0 && j < 7) best = std::max(best, at(c, i, j));
        mx.push_back(best);
      }
    // AveragePool 2x2/2 with ceil: 4x4, the last row/column averages only the cells that exist.
    for (int64_t oi = 0; oi < 4; ++oi)
      for (int64_t oj = 0; oj < 4; ++oj) {
        double sum = 0;
        int count = 0;
        for (int64_t i = oi * 2; i < std::min<int64_t>(oi * 2 + 2, 7); ++i)
          for (int64_t j = oj * 2; j < std::min<int64_t>(oj * 2 + 2, 7); ++j) sum += at(c, i, j), ++count;
        av.push_back(sum / count);
      }
    double sum = 0;
    for (int64_t i = 0; i < 49; ++i) sum += at(c, i / 7, i % 7);
    g.push_back(sum / 49);
  }
  expect_close(out[0], {1, 2, 4, 4}, mx);
  expect_close(out[1], {1, 2, 4, 4}, av);
  expect_close(out[2], {1, 2, 1, 1}, g);
}

// Resize with sizes computed from the input's shape (SCRFD's FPN pattern) and a bilinear resize by
// scales, checked against the ONNX formulas.
TEST(Ops, ResizeNearestFromShapeArithmeticAndBilinearScales) {
  TempDir dir;
  OnnxBuilder m(11);
  m.input("x", {1, 2, -1, -1}).input("big", {1, 2, -1, -1}).output("near").output("lin");
  m.initializer_i64("i2", {1}, {2}).initializer_i64("i4", {1}, {4}).initializer_i64("i0", {1}, {0});
  m.initializer("empty", {0}, {}).initializer("scales", {4}, {1, 1, 1.5f, 0.75f});
  m.node("Shape", {"big"}, {"s"});
  m.node("Slice", {"s", "i2", "i4", "i0"}, {"hw"});  // [H, W] of `big`
  m.node("Shape", {"x"}, {"sx"});
  m.node("Slice", {"sx", "i0", "i2", "i0"}, {"nc"});
  OnnxBuilder::attr(m.node("Concat", {"nc", "hw"}, {"sizes"}), "axis", int64_t{0});
  auto& rn = m.node("Resize", {"x", "", "empty", "sizes"}, {"near"});
  OnnxBuilder::attr(rn, "mode", std::string("nearest"));
  OnnxBuilder::attr(rn, "coordinate_transformation_mode", std::string("asymmetric"));
  OnnxBuilder::attr(rn, "nearest_mode", std::string("floor"));
  auto& rl = m.node("Resize", {"x", "", "scales"}, {"lin"});
  OnnxBuilder::attr(rl, "mode", std::string("linear"));
  OnnxBuilder::attr(rl, "coordinate_transformation_mode", std::string("half_pixel"));
  const Model model = Model::load(m.save(dir.path() / "m.onnx"), {.threads = 2});
  const int64_t h = 4, w = 6;
  const Tensor x = random_tensor({1, 2, h, w}, 9);
  const Tensor big = random_tensor({1, 2, 10, 13}, 10);
  const auto out = model.run({x, big});
  Vec near, lin;
  for (int64_t c = 0; c < 2; ++c) {
    for (int64_t i = 0; i < 10; ++i)
      for (int64_t j = 0; j < 13; ++j) {
        const int64_t si = std::min<int64_t>(static_cast<int64_t>(std::floor(i / (10.0 / h))), h - 1);
        const int64_t sj = std::min<int64_t>(static_cast<int64_t>(std::floor(j / (13.0 / w))), w - 1);
        near.push_back(x.data[(c * h + si) * w + sj]);
      }
    const int64_t oh = 6, ow = 4;  // floor(4 * 1.5), floor(6 * 0.75)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        const double y = std::clamp((i + 0.5) / 1.5 - 0.5, 0.0, h - 1.0);
        const double xx = std::clamp((j + 0.5) / 0.75 - 0.5, 0.0, w - 1.0);
        const int64_t y0 = static_cast<int64_t>(y), x0 = static_cast<int64_t>(xx);
        const int64_t y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
        auto v = [&](int64_t a, int64_t b) { return static_cast<double>(x.data[(c * h + a) * w + b]); };
        const double wy = y - y0, wx = xx - x0;
        lin.push_back((v(y0, x0) * (1 - wx) + v(y0, x1) * wx) * (1 - wy) + (v(y1, x0) * (1 - wx) + v(y1, x1) * wx) * wy);
      }
  }
  expect_close(out[0], {1, 2, 10, 13}, near);
  expect_close(out[1], {1, 2, 6, 4}, lin);
}

// The head pattern of the detectors: Transpose NCHW->NHWC, Reshape to [N, -1, k] with the batch
// taken from Shape, Softmax on the last axis, Slice, Concat; and Gemm + BatchNorm folded.
TEST(Ops, DetectorHeadAndGemmWithFoldedBatchNorm) {
  TempDir dir;
  OnnxBuilder m(13);
  const int64_t C = 4, H = 3, W = 5, E = 6;
  m.input("x", {-1, C, H, W}).output("soft").output("tail").output("emb");
  m.initializer_i64("i0", {1}, {0}).initializer_i64("i1", {1}, {1}).initializer_i64("rest", {2}, {-1, 2});
  m.initializer_i64("flat", {2}, {0, -1});
  const auto wg = random_values(E * C * H * W, 21), bg = random_values(E, 22);
  const auto gamma = random_values(E, 23, 0.5f, 2), beta = random_values(E, 24), mean = random_values(E, 25),
             var = random_values(E, 26, 0.1f, 1);
  m.initializer("wg", {E, C * H * W}, wg).initializer("bg", {E}, bg);
  m.initializer("gamma", {E}, gamma).initializer("beta", {E}, beta).initializer("mean", {E}, mean).initializer("var", {E}, var);
  auto& tr = m.node("Transpose", {"x"}, {"t"});
  OnnxBuilder::attr(tr, "perm", std::vector<int64_t>{0, 2, 3, 1});
  m.node("Shape", {"x"}, {"s"});
  m.node("Slice", {"s", "i0", "i1"}, {"n"});
  auto& cc = m.node("Concat", {"n", "rest"}, {"shape"});
  OnnxBuilder::attr(cc, "axis", int64_t{0});
  m.node("Reshape", {"t", "shape"}, {"r"});  // [N, H*W*C/2, 2]
  auto& sm = m.node("Softmax", {"r"}, {"soft"});
  OnnxBuilder::attr(sm, "axis", int64_t{-1});
  m.initializer_i64("tail_start", {1}, {1}).initializer_i64("tail_end", {1}, {-1}).initializer_i64("tail_axis", {1}, {1});
  m.node("Slice", {"r", "tail_start", "tail_end", "tail_axis"}, {"tail"});  // rows 1 .. rows-2
  m.node("Reshape", {"x", "flat"}, {"f"});
  auto& gm = m.node("Gemm", {"f", "wg", "bg"}, {"g"});
  OnnxBuilder::attr(gm, "transB", int64_t{1});
  m.node("BatchNormalization", {"g", "gamma", "beta", "mean", "var"}, {"emb"});

  const Model model = Model::load(m.save(dir.path() / "m.onnx"), {.threads = 2});
  EXPECT_EQ(model.op_histogram().at("BatchNormalization"), 1);
  const int64_t N = 3;
  const Tensor x = random_tensor({N, C, H, W}, 20, -3, 3);
  const auto out = model.run({x});
  const int64_t rows = H * W * C / 2;
  Vec t;  // NHWC order
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j)
        for (int64_t c = 0; c < C; ++c) t.push_back(x.data[((n * C + c) * H + i) * W + j]);
  Vec soft(t.size()), tail_want;
  for (std::size_t k = 0; k < t.size(); k += 2) {
    const double a = std::exp(t[k]), b = std::exp(t[k + 1]);
    soft[k] = a / (a + b);
    soft[k + 1] = b / (a + b);
  }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t r = 1; r < rows - 1; ++r)
      for (int64_t k = 0; k < 2; ++k) tail_want.push_back(t[(n * rows + r) * 2 + k]);
  Vec emb;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t e = 0; e < E; ++e) {
      double acc = bg[e];
      for (int64_t k = 0; k < C * H * W; ++k) acc += static_cast<double>(x.data[n * C * H * W + k]) * wg[e * C * H * W + k];
      emb.push_back((acc - mean[e]) / std::sqrt(var[e] + 1e-5) * gamma[e] + beta[e]);
    }
  expect_close(out[0], {N, rows, 2}, soft);
  expect_close(out[1], {N, rows - 2, 2}, tail_want);
  expect_close(out[2], {N, E}, emb, 1e-4);
}

// Broadcasting binary ops, including a broadcast first operand that oneDNN cannot take directly.
TEST(Ops, BinaryBroadcasting) {
  TempDir dir;
  OnnxBuilder m(13);
  m.input("x", {2, 3, 4}).input("row", {4}).output("a").output("b").output("c");
  const auto k = random_values(3, 31, 0.5f, 2.0f);
  m.initializer("k", {3, 1}, k);
  m.node("Sub", {"row", "x"}, {"a"});  // row broadcast as the FIRST operand
  m.node("Div", {"x", "k"}, {"b"});    // per-[3,1] divisor
  m.node("Mul", {"k", "x"}, {"c"});    // constant first, commutative
  const Model model = Model::load(m.save(dir.path() / "m.onnx"));
  const Tensor x = random_tensor({2, 3, 4}, 30), row = random_tensor({4}, 32);
  const auto out = model.run({x, row});
  Vec a, b, c;
  for (int64_t i = 0; i < 24; ++i) {
    const int64_t j = i % 4, r = (i / 4) % 3;
    a.push_back(static_cast<double>(row.data[j]) - x.data[i]);
    b.push_back(static_cast<double>(x.data[i]) / k[r]);
    c.push_back(static_cast<double>(x.data[i]) * k[r]);
  }
  expect_close(out[0], {2, 3, 4}, a);
  expect_close(out[1], {2, 3, 4}, b);
  expect_close(out[2], {2, 3, 4}, c);
}

// One Model, several threads, different batch sizes at once: each call gets its own session.
TEST(Ops, ModelIsSafeToShareAcrossThreads) {
  TempDir dir;
  OnnxBuilder m(13);
  const int64_t C = 4;
  const auto w = random_values(C * C * 9, 41);
  m.input("x", {-1, C, 6, 6}).output("y").initializer("w", {C, C, 3, 3}, w);
  auto& conv = m.node("Conv", {"x", "w"}, {"c"});
  OnnxBuilder::attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  m.node("Relu", {"c"}, {"y"});
  const Model model = Model::load(m.save(dir.path() / "m.onnx"), {.threads = 1});
  auto expected = [&](const Tensor& x) {
    int64_t oh, ow;
    Vec y = ref::conv2d(ref::to_double(x.data), x.shape[0], C, 6, 6, ref::to_double(w), C, 3, 3, {}, 1, 1, 1, 1, 1, 1, 1, oh, ow);
    for (double& v : y) v = std::max(v, 0.0);
    return y;
  };
  std::vector<std::thread> threads;
  std::vector<double> errors(4, INFINITY);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      double worst = 0;
      for (int rep = 0; rep < 20; ++rep) {
        const Tensor x = random_tensor({1 + (t + rep) % 3, C, 6, 6}, 100 + t * 50 + rep);
        worst = std::max(worst, ref::max_abs_diff(model.run({x})[0].data, expected(x)));
      }
      errors[t] = worst;
    });
  }
  for (auto& th : threads) th.join();
  for (double e : errors) EXPECT_LE(e, 1e-4);
}

}  // namespace
}  // namespace arcforge::test
