// InsightFace-style backbones built here (the layer patterns of IResNet and MobileFaceNet exports:
// BN before conv, PReLU, strided residual blocks with a downsample branch, GDC, Flatten, Gemm,
// BatchNorm1d, Dropout) checked against ONNX Runtime at batch 1 and batch 3.
#include <gtest/gtest.h>

#include "parity_util.hpp"

namespace arcforge::test {
namespace {

class Net {
 public:
  explicit Net(OnnxBuilder& m) : m_(m) {}

  std::string conv(const std::string& x, int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t group = 1) {
    const std::string w = fresh("w"), y = fresh("conv");
    m_.initializer(w, {cout, cin / group, k, k}, random_values(cout * cin / group * k * k, seed_++, -0.5f, 0.5f));
    auto& n = m_.node("Conv", {x, w}, {y});
    OnnxBuilder::attr(n, "kernel_shape", std::vector<int64_t>{k, k});
    OnnxBuilder::attr(n, "strides", std::vector<int64_t>{stride, stride});
    OnnxBuilder::attr(n, "pads", std::vector<int64_t>{k / 2, k / 2, k / 2, k / 2});
    if (group > 1) OnnxBuilder::attr(n, "group", group);
    return y;
  }
  std::string bn(const std::string& x, int64_t c) {
    const std::string g = fresh("g"), b = fresh("b"), mu = fresh("mu"), var = fresh("var"), y = fresh("bn");
    m_.initializer(g, {c}, random_values(c, seed_++, 0.5f, 1.5f));
    m_.initializer(b, {c}, random_values(c, seed_++, -0.2f, 0.2f));
    m_.initializer(mu, {c}, random_values(c, seed_++, -0.2f, 0.2f));
    m_.initializer(var, {c}, random_values(c, seed_++, 0.5f, 2.0f));
    OnnxBuilder::attr(m_.node("BatchNormalization", {x, g, b, mu, var}, {y}), "epsilon", 2e-5f);
    return y;
  }
  std::string prelu(const std::string& x, int64_t c) {
    const std::string s = fresh("slope"), y = fresh("prelu");
    m_.initializer(s, {c, 1, 1}, random_values(c, seed_++, 0.0f, 0.4f));
    m_.node("PRelu", {x, s}, {y});
    return y;
  }
  std::string add(const std::string& a, const std::string& b) {
    const std::string y = fresh("add");
    m_.node("Add", {a, b}, {y});
    return y;
  }
  // IResNet block: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the shortcut.
  std::string iresnet_block(const std::string& x, int64_t cin, int64_t cout, int64_t stride) {
    std::string y = bn(x, cin);
    y = prelu(bn(conv(y, cin, cout, 3, 1), cout), cout);
    y = bn(conv(y, cout, cout, 3, stride), cout);
    const std::string shortcut = stride == 1 && cin == cout ? x : bn(conv(x, cin, cout, 1, stride), cout);
    return add(y, shortcut);
  }
  // MobileFaceNet depthwise residual: 1x1 expand -> PReLU -> dw3x3 -> PReLU -> 1x1 project (+x).
  std::string mbf_block(const std::string& x, int64_t c, int64_t expand) {
    std::string y = prelu(bn(conv(x, c, expand, 1, 1), expand), expand);
    y = prelu(bn(conv(y, expand, expand, 3, 1, expand), expand), expand);
    y = bn(conv(y, expand, c, 1, 1), c);
    return add(x, y);
  }
  std::string head(const std::string& x, int64_t c, int64_t hw, int64_t emb) {
    std::string y = fresh("drop");
    m_.node("Dropout", {x}, {y});
    const std::string f = fresh("flat"), w = fresh("fc_w"), b = fresh("fc_b"), g = fresh("fc");
    OnnxBuilder::attr(m_.node("Flatten", {y}, {f}), "axis", int64_t{1});
    m_.initializer(w, {emb, c * hw * hw}, random_values(emb * c * hw * hw, seed_++, -0.1f, 0.1f));
    m_.initializer(b, {emb}, random_values(emb, seed_++));
    OnnxBuilder::attr(m_.node("Gemm", {f, w, b}, {g}), "transB", int64_t{1});
    return bn(g, emb);
  }

 private:
  std::string fresh(const std::string& prefix) {
    std::string name = prefix;
    name += std::to_string(counter_++);
    return name;
  }
  OnnxBuilder& m_;
  int counter_ = 0;
  uint32_t seed_ = 500;
};

// 3x32x32 input (a 112x112 network in miniature), embedding 16.
std::string mini_iresnet(const std::string& path) {
  OnnxBuilder m(13);
  m.input("data", {-1, 3, 32, 32});
  Net net(m);
  std::string x = net.prelu(net.bn(net.conv("data", 3, 16, 3, 1), 16), 16);
  x = net.iresnet_block(x, 16, 16, 2);  // 16x16
  x = net.iresnet_block(x, 16, 24, 2);  // 8x8
  x = net.iresnet_block(x, 24, 24, 1);
  x = net.bn(x, 24);
  const std::string emb = net.head(x, 24, 8, 16);
  m.output(emb);
  return m.save(path);
}

std::string mini_mobilefacenet(const std::string& path) {
  OnnxBuilder m(11);
  m.input("data", {-1, 3, 32, 32});
  Net net(m);
  std::string x = net.prelu(net.bn(net.conv("data", 3, 16, 3, 2), 16), 16);  // 16x16
  x = net.prelu(net.bn(net.conv(x, 16, 16, 3, 1, 16), 16), 16);
  x = net.mbf_block(x, 16, 32);
  x = net.mbf_block(x, 16, 32);
  x = net.prelu(net.bn(net.conv(x, 16, 32, 1, 1), 32), 32);
  // GDC: a 16x16 depthwise conv without padding reduces each channel to 1x1.
  const std::string w = "gdc_w", g = "gdc";
  m.initializer(w, {32, 1, 16, 16}, random_values(32 * 256, 77, -0.1f, 0.1f));
  auto& gdc = m.node("Conv", {x, w}, {g});
  OnnxBuilder::attr(gdc, "group", int64_t{32});
  OnnxBuilder::attr(gdc, "kernel_shape", std::vector<int64_t>{16, 16});
  const std::string emb = net.head(net.bn(g, 32), 32, 1, 16);
  m.output(emb);
  return m.save(path);
}

class BackboneParity : public ::testing::TestWithParam<std::string> {};

TEST_P(BackboneParity, MatchesOnnxRuntime) {
  const std::string why = ort_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "SKIPPED: " << why;
  TempDir dir;
  const std::string path = GetParam() == "iresnet" ? mini_iresnet(dir.file("m.onnx")) : mini_mobilefacenet(dir.file("m.onnx"));
  const auto model = runtime::Model::load(path, {.threads = 2});
  // Every BatchNorm that follows a Conv or Gemm is folded away.
  EXPECT_LT(model.optimized_node_count(), static_cast<std::size_t>(model.op_histogram().at("Conv") +
                                                                    model.op_histogram().at("PRelu") + 8));
  for (int64_t batch : {1, 3}) {
    runtime::Tensor x{{batch, 3, 32, 32}, random_values(static_cast<std::size_t>(batch * 3 * 32 * 32), 900 + batch)};
    const auto ref = run_onnxruntime(path, {x});
    const auto ours = model.run({x});
    ASSERT_EQ(ours.size(), 1u);
    ASSERT_EQ(ours[0].shape, ref[0].shape);
    const Difference d = compare(ours[0], ref[0]);
    EXPECT_GT(d.scale, 0.0);
    EXPECT_LE(d.max_abs, 1e-4 * d.scale) << GetParam() << " batch " << batch;
    std::printf("[parity] mini %s batch %lld: relative %.3g\n", GetParam().c_str(), static_cast<long long>(batch),
                d.max_abs / d.scale);
  }
}

INSTANTIATE_TEST_SUITE_P(Synthetic, BackboneParity, ::testing::Values("iresnet", "mobilefacenet"));

}  // namespace
}  // namespace arcforge::test
