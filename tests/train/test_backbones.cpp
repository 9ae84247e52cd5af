// Backbones and their complexity: shapes, parameter names (InsightFace weights load by name),
// parameter/MAC counts against an independent count from the architecture spec and against
// InsightFace's published figures, determinism, gradient flow, errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "train/nn/backbone.hpp"
#include "train/nn/margin.hpp"
#include "train/nn/complexity.hpp"
#include "backbone_helpers.hpp"

namespace an = arcforge::nn;

namespace {

using arcforge::test::build_backbone;
std::shared_ptr<an::Backbone> build(const std::string& arch, int64_t embedding = 512) {
  return build_backbone(arch, embedding);
}

// ---- Independent count, straight from the arcface_torch layer tables, in double precision -----
// Rules (ptflops, as InsightFace used): conv = out elems * in/groups * k*k (+out elems for bias),
// linear = in*out (+out for bias), BN = 2*elems (affine), PReLU = elems; adds are not counted.

struct Count {
  double params = 0;
  double macs = 0;
};

// conv (no bias) at output resolution hw x hw, optionally followed by BN and PReLU.
void conv_bn(Count& c, double in, double out, double k, double groups, double hw, bool bn,
             bool prelu) {
  c.params += out * (in / groups) * k * k;
  c.macs += hw * hw * out * (in / groups) * k * k;
  if (bn) {
    c.params += 2 * out;
    c.macs += 2 * hw * hw * out;
  }
  if (prelu) {
    c.params += out;
    c.macs += hw * hw * out;
  }
}

void bn_only(Count& c, double channels, double hw) {
  c.params += 2 * channels;
  c.macs += 2 * hw * hw * channels;
}

Count reference_iresnet(std::array<int, 4> blocks, double embedding) {
  Count c;
  double hw = 112;
  conv_bn(c, 3, 64, 3, 1, hw, true, true);  // stem
  const double widths[4] = {64, 128, 256, 512};
  double in = 64;
  for (int layer = 0; layer < 4; ++layer) {
    const double planes = widths[layer];
    for (int b = 0; b < blocks[layer]; ++b) {
      const bool first = b == 0;  // stride 2 + downsample
      bn_only(c, in, hw);                                  // bn1
      conv_bn(c, in, planes, 3, 1, hw, true, true);        // conv1 + bn2 + prelu
      const double out_hw = first ? hw / 2 : hw;
      conv_bn(c, planes, planes, 3, 1, out_hw, true, false);  // conv2 + bn3
      if (first) conv_bn(c, in, planes, 1, 1, out_hw, true, false);  // downsample
      in = planes;
      hw = out_hw;
    }
  }
  bn_only(c, 512, 7);                             // bn2
  c.params += 512 * 49 * embedding + embedding;   // fc with bias
  c.macs += 512 * 49 * embedding + embedding;
  c.params += embedding;                          // features: bias only (weight frozen)
  c.macs += 2 * embedding;
  return c;
}

void depthwise_block(Count& c, double in, double out, double hidden, double stride, double hw) {
  conv_bn(c, in, hidden, 1, 1, hw, true, true);
  conv_bn(c, hidden, hidden, 3, hidden, hw / stride, true, true);
  conv_bn(c, hidden, out, 1, 1, hw / stride, true, false);
}

Count reference_mbf(std::array<int, 4> blocks, double scale, double embedding) {
  Count c;
  const double narrow = 64 * scale, wide = 128 * scale;
  conv_bn(c, 3, narrow, 3, 1, 56, true, true);
  if (blocks[0] == 1) {
    conv_bn(c, narrow, narrow, 3, 64, 56, true, true);
  } else {
    for (int b = 0; b < blocks[0]; ++b) depthwise_block(c, narrow, narrow, 128, 1, 56);
  }
  depthwise_block(c, narrow, narrow, 128, 2, 56);
  for (int b = 0; b < blocks[1]; ++b) depthwise_block(c, narrow, narrow, 128, 1, 28);
  depthwise_block(c, narrow, wide, 256, 2, 28);
  for (int b = 0; b < blocks[2]; ++b) depthwise_block(c, wide, wide, 256, 1, 14);
  depthwise_block(c, wide, wide, 512, 2, 14);
  for (int b = 0; b < blocks[3]; ++b) depthwise_block(c, wide, wide, 256, 1, 7);
  conv_bn(c, wide, 512, 1, 1, 7, true, true);          // conv_sep
  conv_bn(c, 512, 512, 7, 512, 1, true, false);        // GDC depthwise 7x7
  c.params += 512 * embedding + 2 * embedding;         // linear (no bias) + BatchNorm1d
  c.macs += 512 * embedding + 2 * embedding;
  return c;
}

Count reference(const std::string& arch, double embedding) {
  if (arch == "r18") return reference_iresnet({2, 2, 2, 2}, embedding);
  if (arch == "r34") return reference_iresnet({3, 4, 6, 3}, embedding);
  if (arch == "r50") return reference_iresnet({3, 4, 14, 3}, embedding);
  if (arch == "r100") return reference_iresnet({3, 13, 30, 3}, embedding);
  if (arch == "r200") return reference_iresnet({6, 26, 60, 6}, embedding);
  if (arch == "mbf") return reference_mbf({1, 4, 6, 2}, 2, embedding);
  if (arch == "mbf_large") return reference_mbf({2, 8, 12, 4}, 4, embedding);
  ADD_FAILURE() << "no reference for " << arch;
  return {};
}

// Measured once per (arch, embedding) and shared by the tests: r200's forward pass is the costliest.
an::Complexity measured(const std::string& arch, int64_t embedding = 512) {
  static std::map<std::pair<std::string, int64_t>, an::Complexity> cache;
  const auto key = std::make_pair(arch, embedding);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, an::measure_complexity(*build(arch, embedding))).first;
  return it->second;
}

void expect_counts_match_reference(const std::string& arch, int64_t embedding) {
  const an::Complexity c = measured(arch, embedding);
  const Count ref = reference(arch, static_cast<double>(embedding));
  EXPECT_EQ(c.params, static_cast<int64_t>(ref.params)) << arch;
  EXPECT_EQ(c.macs, static_cast<int64_t>(ref.macs)) << arch;
  EXPECT_EQ(c.flops(), 2 * c.macs);
  std::printf("  %-10s E=%-4lld params %10.3f M   MACs %8.4f G\n", arch.c_str(),
              static_cast<long long>(embedding), c.params / 1e6, c.macs / 1e9);
}

std::map<std::string, torch::Tensor> named_params(const an::Backbone& net) { return arcforge::test::named_tensors(net); }

void expect_shape(const std::map<std::string, torch::Tensor>& params, const std::string& name,
                  std::vector<int64_t> shape) {
  auto it = params.find(name);
  ASSERT_NE(it, params.end()) << "missing " << name;
  EXPECT_EQ(it->second.sizes().vec(), shape) << name;
}

}  // namespace

TEST(Backbones, NamesListCanonicalFirstThenAliases) {
  const std::vector<std::string> names = an::backbone_names();
  const std::vector<std::string> expected = {
      "r18",       "r34",       "r50",         "r100",        "r200",        "mbf",        "mbf_large",
      "vit_t",     "vit_s",     "vit_b",       "vit_t_dp005_mask0", "vit_s_dp005_mask_0",
      "vit_b_dp005_mask_005", "vit_l_dp005_mask_005", "iresnet18", "iresnet34", "iresnet50", "iresnet100",
      "iresnet200"};
  EXPECT_EQ(names, expected);
}

TEST(Backbones, UnknownArchIsConfigErrorNamingIt) {
  try {
    build("resnet9000");
    FAIL() << "no exception";
  } catch (const arcforge::ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("resnet9000"), std::string::npos) << what;
    EXPECT_NE(what.find("mbf_large"), std::string::npos) << what;  // lists the known names
  }
  EXPECT_THROW(build("r50", 0), arcforge::ConfigError);
  an::BackboneOptions bad_dropout;
  bad_dropout.arch = "r18";
  bad_dropout.dropout = 1.0;
  EXPECT_THROW(an::make_backbone(bad_dropout), arcforge::ConfigError);
}

TEST(Backbones, AliasesBuildTheSameNetwork) {
  auto alias_net = build("iresnet34");
  EXPECT_EQ(alias_net->arch(), "r34");
  auto alias = named_params(*alias_net);
  auto canonical = named_params(*build("r34"));
  ASSERT_EQ(alias.size(), canonical.size());
  for (const auto& [name, tensor] : canonical) {
    ASSERT_EQ(alias.count(name), 1u) << name;
    EXPECT_EQ(alias.at(name).sizes(), tensor.sizes()) << name;
  }
}

// Shapes are checked in training mode (without autograd): at initialisation the eval-mode batch
// norms are identities (running mean 0, variance 1), and arcface_torch's N(0, 0.1) conv init then
// grows r100/r200 activations past float range; batch statistics keep them finite.
void expect_embedding_shape(const std::string& arch, int64_t embedding) {
  torch::NoGradGuard no_grad;
  auto net = build(arch, embedding);
  net->train();
  const torch::Tensor out = net->forward(torch::randn({2, 3, 112, 112}));
  EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{2, embedding})) << arch;
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>()) << arch;
  EXPECT_EQ(net->embedding_size(), embedding);
  EXPECT_EQ(net->arch(), arch);
}

// Batch 2 for every arch except r200 (its own test below).
TEST(Backbones, OutputShapesAtBatch2) {
  for (const std::string arch : {"r18", "r34", "r50", "r100", "mbf", "mbf_large"}) {
    expect_embedding_shape(arch, 512);
  }
}

TEST(Backbones, EmbeddingSize128) { expect_embedding_shape("mbf", 128); }

TEST(Backbones, ParameterNamesMirrorArcfaceTorch) {
  auto r50 = named_params(*build("r50"));
  expect_shape(r50, "conv1.weight", {64, 3, 3, 3});
  expect_shape(r50, "bn1.running_var", {64});
  expect_shape(r50, "prelu.weight", {64});
  expect_shape(r50, "layer1.0.bn1.weight", {64});
  expect_shape(r50, "layer1.0.conv1.weight", {64, 64, 3, 3});
  expect_shape(r50, "layer1.0.prelu.weight", {64});
  expect_shape(r50, "layer2.0.conv2.weight", {128, 128, 3, 3});
  expect_shape(r50, "layer2.0.downsample.0.weight", {128, 64, 1, 1});
  expect_shape(r50, "layer2.0.downsample.1.running_mean", {128});
  expect_shape(r50, "layer3.13.bn3.bias", {256});
  expect_shape(r50, "layer4.2.conv2.weight", {512, 512, 3, 3});
  expect_shape(r50, "bn2.weight", {512});
  expect_shape(r50, "fc.weight", {512, 512 * 7 * 7});
  expect_shape(r50, "fc.bias", {512});
  expect_shape(r50, "features.weight", {512});
  expect_shape(r50, "features.running_var", {512});
  EXPECT_EQ(r50.count("layer1.1.downsample.0.weight"), 0u);  // only first blocks downsample
  EXPECT_EQ(r50.count("layer3.14.conv1.weight"), 0u);        // r50's layer3 has 14 blocks

  auto mbf = named_params(*build("mbf"));
  expect_shape(mbf, "layers.0.layers.0.weight", {128, 3, 3, 3});
  expect_shape(mbf, "layers.0.layers.2.weight", {128});  // PReLU
  expect_shape(mbf, "layers.1.layers.0.weight", {128, 2, 3, 3});  // groups=64 on 128 channels
  expect_shape(mbf, "layers.2.layers.1.layers.0.weight", {128, 1, 3, 3});
  expect_shape(mbf, "layers.3.layers.3.layers.2.layers.0.weight", {128, 128, 1, 1});
  expect_shape(mbf, "layers.4.layers.2.layers.0.weight", {256, 256, 1, 1});
  expect_shape(mbf, "layers.5.layers.5.layers.0.layers.0.weight", {256, 256, 1, 1});
  expect_shape(mbf, "layers.6.layers.0.layers.0.weight", {512, 256, 1, 1});
  expect_shape(mbf, "layers.7.layers.1.layers.2.layers.1.running_var", {256});
  expect_shape(mbf, "conv_sep.layers.0.weight", {512, 256, 1, 1});
  expect_shape(mbf, "features.layers.0.layers.0.weight", {512, 1, 7, 7});
  expect_shape(mbf, "features.layers.2.weight", {512, 512});
  expect_shape(mbf, "features.layers.3.weight", {512});
  EXPECT_EQ(mbf.count("features.layers.2.bias"), 0u);

  auto large = named_params(*build("mbf_large"));
  expect_shape(large, "layers.1.layers.1.layers.1.layers.0.weight", {128, 1, 3, 3});  // Residual
  expect_shape(large, "layers.7.layers.3.layers.2.layers.0.weight", {512, 256, 1, 1});
}

TEST(Backbones, IResNetInitMatchesArcfaceTorch) {
  auto net = build("r34");
  auto p = named_params(*net);
  const torch::Tensor features_weight = p.at("features.weight");
  EXPECT_FALSE(features_weight.requires_grad());
  EXPECT_TRUE(torch::equal(features_weight, torch::ones({512})));
  EXPECT_TRUE(torch::equal(p.at("layer2.1.bn2.weight"), torch::ones({128})));
  EXPECT_TRUE(torch::equal(p.at("layer2.1.bn2.bias"), torch::zeros({128})));
  // conv weights ~ N(0, 0.1): the sample std of 0.6 M weights is within 1% of 0.1.
  const double std = p.at("layer3.0.conv2.weight").std().item<double>();
  EXPECT_NEAR(std, 0.1, 0.001);
  EXPECT_NEAR(p.at("prelu.weight").mean().item<double>(), 0.25, 1e-7);
}

TEST(Backbones, MobileFaceNetInitIsKaimingFanOut) {
  auto p = named_params(*build("mbf"));
  // kaiming normal, fan_out, relu: std = sqrt(2 / (out * k * k)).
  const torch::Tensor w = p.at("layers.5.layers.0.layers.0.layers.0.weight");  // [256,256,1,1]
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / 256.0), 0.002);
  const torch::Tensor linear = p.at("features.layers.2.weight");  // [512,512]
  EXPECT_NEAR(linear.std().item<double>(), std::sqrt(2.0 / 512.0), 0.002);
}

// The measured counts equal the count derived from the layer tables, for every arch.
TEST(Backbones, ComplexityMatchesIndependentCount) {
  for (const std::string arch : {"r18", "r34", "r50", "r100", "r200", "mbf", "mbf_large"}) {
    expect_counts_match_reference(arch, 512);
  }
  expect_counts_match_reference("r18", 128);
  expect_counts_match_reference("mbf", 128);
}

// InsightFace publishes MACs as "GFLOPs": r18 2.6, r50 6.3, r100 12.1, r200 23.5, mbf 0.45;
// r50 has 43.6 M parameters.
TEST(Backbones, ComplexityMatchesPublishedFigures) {
  const std::vector<std::pair<std::string, double>> published_gmacs = {
      {"r18", 2.6}, {"r50", 6.3}, {"r100", 12.1}, {"r200", 23.5}, {"mbf", 0.45}};
  for (const auto& [arch, gmacs] : published_gmacs) {
    const double measured_gmacs = static_cast<double>(measured(arch).macs) / 1e9;
    EXPECT_NEAR(measured_gmacs, gmacs, 0.03 * gmacs) << arch;
  }
  const double r50_params = static_cast<double>(measured("r50").params);
  EXPECT_NEAR(r50_params / 1e6, 43.6, 0.03 * 43.6);
}

// r200 is the costliest: one batch-2 forward for the shape; its complexity is measured above.
TEST(Backbones, R200OutputShape) { expect_embedding_shape("r200", 512); }

TEST(Backbones, MeasureComplexityRestoresTrainingMode) {
  auto net = build("mbf");
  net->train();
  an::measure_complexity(*net);
  EXPECT_TRUE(net->is_training());
  net->eval();
  an::measure_complexity(*net);
  EXPECT_FALSE(net->is_training());
  EXPECT_THROW(an::measure_complexity(*net, 0, 112), arcforge::ConfigError);
}

TEST(Backbones, WrongInputSizeIsInputError) {
  auto net = build("mbf");
  net->eval();
  torch::NoGradGuard no_grad;
  EXPECT_THROW(net->forward(torch::zeros({1, 3, 96, 96})), arcforge::InputError);
  EXPECT_THROW(net->forward(torch::zeros({1, 1, 112, 112})), arcforge::InputError);
  EXPECT_THROW(an::measure_complexity(*net, 96, 96), arcforge::InputError);
  auto r18 = build("r18");
  EXPECT_THROW(r18->forward(torch::zeros({3, 112, 112})), arcforge::InputError);
}

// Eval mode: the same input gives the same output, and an image's embedding does not depend on
// the other images in its batch (batch norm uses running statistics). Comparisons are relative:
// untrained networks give embeddings of arbitrary scale.
TEST(Backbones, EvalModeIsDeterministicAndBatchIndependent) {
  torch::NoGradGuard no_grad;
  for (const std::string arch : {"r18", "mbf"}) {
    auto net = build(arch);
    net->eval();
    const torch::Tensor images = torch::randn({2, 3, 112, 112});
    const torch::Tensor a = net->forward(images);
    const torch::Tensor b = net->forward(images);
    ASSERT_TRUE(torch::isfinite(a).all().item<bool>()) << arch;
    EXPECT_TRUE(torch::equal(a, b)) << arch;
    const double scale = a[0].norm().item<double>();
    ASSERT_GT(scale, 0.0) << arch;
    const torch::Tensor single = net->forward(images.slice(0, 0, 1));
    EXPECT_LE((single[0] - a[0]).norm().item<double>(), 1e-4 * scale) << arch;
    EXPECT_GT((a[1] - a[0]).norm().item<double>(), 1e-2 * scale) << arch;  // images differ
  }
}

// Training mode: a loss on the embedding reaches the stem conv (batch 4, because batch norm on a
// batch of 2 makes each output a sign and kills the gradient).
TEST(Backbones, GradientReachesStemConv) {
  const std::vector<std::pair<std::string, std::string>> stems = {
      {"r18", "conv1.weight"}, {"mbf", "layers.0.layers.0.weight"}};
  for (const auto& [arch, stem] : stems) {
    auto net = build(arch);
    net->train();
    const torch::Tensor images = torch::randn({4, 3, 112, 112});
    const torch::Tensor direction = torch::randn({4, 512});
    (net->forward(images) * direction).sum().backward();
    auto p = named_params(*net);
    const torch::Tensor grad = p.at(stem).grad();
    ASSERT_TRUE(grad.defined()) << arch;
    EXPECT_TRUE(torch::isfinite(grad).all().item<bool>()) << arch;
    EXPECT_GT(grad.abs().sum().item<double>(), 0.0) << arch;
    if (arch == "r18") {
      EXPECT_FALSE(p.at("features.weight").grad().defined());
    }
  }
}

#ifdef ARCFORGE_CLI
// Runs the CLI with `args`, expects exit status 0, and parses its stdout as one JSON object.
nlohmann::json run_cli_json(const std::string& args) {
  const std::string command = std::string(ARCFORGE_CLI) + " " + args;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  if (pclose(pipe) != 0) throw std::runtime_error(command + " failed: " + output);
  return nlohmann::json::parse(output);
}

// The CLI's --json output agrees with measure_complexity (skipped when the CLI is not built).
TEST(Backbones, ModelInfoCommandJson) {
  if (!std::filesystem::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  const nlohmann::json j = run_cli_json("model-info mbf --embedding-size 128 --threads 2 --json");
  const an::Complexity c = measured("mbf", 128);
  EXPECT_EQ(j.at("arch"), "mbf");
  EXPECT_EQ(j.at("params").get<int64_t>(), c.params);
  EXPECT_EQ(j.at("macs").get<int64_t>(), c.macs);
  EXPECT_EQ(j.at("flops").get<int64_t>(), 2 * c.macs);
  EXPECT_EQ(j.at("input"), nlohmann::json::array({112, 112}));
  EXPECT_EQ(j.at("embedding_size").get<int64_t>(), 128);
}

// bench-torch (the libtorch column of bench/runtime/compare_all.sh) prints a consistent timing.
TEST(Backbones, BenchTorchTimesTheExportedNetwork) {
  if (!std::filesystem::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  const nlohmann::json j = run_cli_json("bench-torch --arch mbf --batch 2 --threads 1 --repeats 2 --json");
  EXPECT_EQ(j.at("engine").get<std::string>(), "libtorch");
  EXPECT_EQ(j.at("batch").get<int>(), 2);
  EXPECT_GT(j.at("ms_per_image").get<double>(), 0.0);
  EXPECT_NEAR(j.at("images_per_s").get<double>() * j.at("ms_per_image").get<double>(), 1000.0, 1e-6);
}

// check-device's own code, run CPU against CPU (fp32): the comparison must be exact, and every
// margin must be covered. Guards the command that only ever runs for real on a GPU machine.
TEST(Backbones, CheckDeviceSelfCheckOnCpu) {
  if (!std::filesystem::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  // vit_t: its random masking must stay out of the comparison (two draws would differ even on one device).
  const nlohmann::json j = run_cli_json("check-device --device cpu --arch mbf --arch vit_t --batch 2 --json");
  EXPECT_TRUE(j.at("ok").get<bool>());
  ASSERT_EQ(j.at("backbones").size(), 2u);
  for (const auto& b : j["backbones"]) {
    EXPECT_EQ(b.at("fp32_rel_err").get<double>(), 0.0) << b.dump();
    EXPECT_EQ(b.at("fp32_grad_rel_err").get<double>(), 0.0) << b.dump();
  }
  EXPECT_EQ(j.at("margins").size(), an::margin_names().size());
  for (const auto& m : j["margins"]) EXPECT_EQ(m.at("grad_rel_err").get<double>(), 0.0) << m.dump();
  EXPECT_EQ(j.at("checkpoint_rng").at("device").get<std::string>(), "cpu");
  EXPECT_TRUE(j["checkpoint_rng"].at("ok").get<bool>());
}
#endif
