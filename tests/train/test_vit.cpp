// The Vision Transformer backbones (arcface_torch's vit_t / vit_s / vit_b / vit_l): published
// complexity, parameter and MAC counts from the layer formula, arcface_torch's parameter names, one
// block against a double-precision recomputation, token masking in training only, and a short
// training run.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include "arcforge/common/error.hpp"
#include "backbone_helpers.hpp"
#include "train/compat/torch_compat.hpp"
#include "train/nn/complexity.hpp"
#include "train/nn/vit.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/trainer.hpp"
#ifdef ARCFORGE_WITH_EXPORT
#include "train/export/backbone_layers.hpp"
#endif

namespace an = arcforge::nn;

namespace {

using arcforge::test::build_backbone;
using arcforge::test::named_tensors;

// Parameters and MACs written out from the architecture (ptflops' rules plus the two attention
// products, as arcface_torch adds its "extra_gflops"): T = 144 tokens of width D, E outputs.
struct Expected {
  int64_t params = 0, macs = 0;
};
Expected formula(int64_t d, int64_t depth, int64_t e) {
  const int64_t t = 144, patch = 3 * 9 * 9, hidden = 4 * d;
  Expected x;
  x.params = patch * d + d                                   // patch_embed.proj
             + t * d + d                                     // pos_embed, mask_token
             + depth * (2 * 2 * d                            // norm1, norm2
                        + d * 3 * d                          // qkv (no bias)
                        + d * d + d                          // proj
                        + d * hidden + hidden + hidden * d + d)  // mlp
             + 2 * d                                         // norm
             + t * d * d + 2 * d + d * e + 2 * e;            // feature: Linear, BN, Linear, BN
  x.macs = t * d * patch + t * d                             // patch conv with bias
           + depth * (2 * 2 * t * d                          // two LayerNorms (affine: x2)
                      + t * d * 3 * d                        // qkv
                      + 2 * t * t * d                        // q.k and attention.v over all heads
                      + t * d * d + t * d                    // proj
                      + t * d * hidden + t * hidden          // fc1
                      + t * hidden                           // ReLU6
                      + t * hidden * d + t * d)              // fc2
           + 2 * t * d                                       // norm
           + t * d * d + 2 * d + d * e + 2 * e;              // feature head (BN affine: x2)
  return x;
}

}  // namespace

// InsightFace's model zoo lists ViT-T 1.5, ViT-S 5.7, ViT-B 11.4 and ViT-L 25.3 "GFLOPs" (MACs, with
// the attention products).
TEST(Vit, ComplexityMatchesPublishedFigures) {
  const std::vector<std::pair<std::string, double>> published = {
      {"vit_t", 1.5}, {"vit_s", 5.7}, {"vit_b", 11.4}, {"vit_l_dp005_mask_005", 25.3}};
  for (const auto& [arch, gmacs] : published) {
    auto net = build_backbone(arch);
    const double measured = static_cast<double>(an::measure_complexity(*net).macs) / 1e9;
    EXPECT_NEAR(measured, gmacs, 0.03 * gmacs) << arch;
  }
}

TEST(Vit, CountsMatchTheLayerFormula) {
  for (const auto& [arch, d, depth] : std::vector<std::tuple<std::string, int64_t, int64_t>>{
           {"vit_t", 256, 12}, {"vit_s", 512, 12}, {"vit_b_dp005_mask_005", 512, 24}}) {
    for (int64_t e : {512, 128}) {
      const an::Complexity c = an::measure_complexity(*build_backbone(arch, e));
      const Expected want = formula(d, depth, e);
      EXPECT_EQ(c.params, want.params) << arch << " E=" << e;
      EXPECT_EQ(c.macs, want.macs) << arch << " E=" << e;
    }
  }
}

TEST(Vit, ParameterNamesMirrorArcfaceTorch) {
  auto p = named_tensors(*build_backbone("vit_t"));
  const std::map<std::string, std::vector<int64_t>> shapes = {
      {"patch_embed.proj.weight", {256, 3, 9, 9}}, {"patch_embed.proj.bias", {256}},
      {"pos_embed", {1, 144, 256}},                {"mask_token", {1, 1, 256}},
      {"blocks.0.norm1.weight", {256}},            {"blocks.0.attn.qkv.weight", {768, 256}},
      {"blocks.0.attn.proj.weight", {256, 256}},   {"blocks.0.attn.proj.bias", {256}},
      {"blocks.11.norm2.bias", {256}},             {"blocks.11.mlp.fc1.weight", {1024, 256}},
      {"blocks.11.mlp.fc2.bias", {256}},           {"norm.weight", {256}},
      {"feature.0.weight", {256, 144 * 256}},      {"feature.1.running_var", {256}},
      {"feature.2.weight", {512, 256}},            {"feature.3.weight", {512}}};
  for (const auto& [name, shape] : shapes) {
    ASSERT_EQ(p.count(name), 1u) << name;
    EXPECT_EQ(p.at(name).sizes().vec(), shape) << name;
  }
  EXPECT_EQ(p.count("blocks.0.attn.qkv.bias"), 0u);  // qkv_bias=False
  EXPECT_EQ(p.count("feature.0.bias"), 0u);
  EXPECT_EQ(p.count("blocks.12.norm1.weight"), 0u);  // depth 12
  // arcface_torch's init: Linear weights N(0, 0.02), biases 0, LayerNorm 1 and 0.
  EXPECT_NEAR(p.at("blocks.3.mlp.fc1.weight").std().item<double>(), 0.02, 0.0005);
  EXPECT_EQ(p.at("blocks.3.mlp.fc1.bias").abs().max().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(p.at("blocks.3.norm1.weight"), torch::ones({256})));
}

// One block in eval mode against the same arithmetic in double precision, written out here:
// x + proj(attention(LN1(x))), then + fc2(relu6(fc1(LN2(.)))).
TEST(Vit, BlockMatchesDoublePrecision) {
  torch::manual_seed(3);
  const int64_t d = 32, heads = 4, t = 10, n = 2;
  an::vit::Block block(d, heads, /*drop_path=*/0.0, /*drop_rate=*/0.0);
  block->eval();
  auto p = named_tensors(*block);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : p)
      if (name.find("norm") != std::string::npos) tensor.uniform_(0.5, 1.5);  // non-trivial LayerNorm affine
  }
  const torch::Tensor x = torch::randn({n, t, d});
  const torch::Tensor got = block->forward(x).to(torch::kDouble);

  auto w = [&](const std::string& name) { return p.at(name).detach().to(torch::kDouble); };
  auto layer_norm = [](const torch::Tensor& v, const torch::Tensor& g, const torch::Tensor& b) {
    const torch::Tensor mean = v.mean(-1, true);
    const torch::Tensor var = (v - mean).pow(2).mean(-1, true);
    return (v - mean) / (var + 1e-5).sqrt() * g + b;
  };
  const torch::Tensor xd = x.to(torch::kDouble);
  const torch::Tensor h = layer_norm(xd, w("norm1.weight"), w("norm1.bias"));
  const torch::Tensor qkv = h.matmul(w("attn.qkv.weight").t());  // [n,t,3d]
  const int64_t hd = d / heads;
  torch::Tensor attended = torch::zeros({n, t, d}, torch::kDouble);
  for (int64_t head = 0; head < heads; ++head) {
    const torch::Tensor q = qkv.narrow(2, head * hd, hd), k = qkv.narrow(2, d + head * hd, hd),
                        v = qkv.narrow(2, 2 * d + head * hd, hd);
    const torch::Tensor scores = q.matmul(k.transpose(1, 2)) / std::sqrt(static_cast<double>(hd));
    const torch::Tensor e = (scores - std::get<0>(scores.max(-1, true))).exp();
    attended.narrow(2, head * hd, hd).copy_((e / e.sum(-1, true)).matmul(v));
  }
  const torch::Tensor y = xd + attended.matmul(w("attn.proj.weight").t()) + w("attn.proj.bias");
  const torch::Tensor m = layer_norm(y, w("norm2.weight"), w("norm2.bias"));
  const torch::Tensor hidden = (m.matmul(w("mlp.fc1.weight").t()) + w("mlp.fc1.bias")).clamp(0.0, 6.0);
  const torch::Tensor want = y + hidden.matmul(w("mlp.fc2.weight").t()) + w("mlp.fc2.bias");
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-5 * want.abs().max().item<double>());
}

// arcface_torch's random masking: in training, int(144 * 0.9) = 129 tokens of each image go
// through the blocks and the other 15 come back as the mask token, a different set per image; in
// eval mode every token is computed.
TEST(Vit, TrainingMasksTokensAndEvalDoesNot) {
  torch::manual_seed(4);
  auto net = std::dynamic_pointer_cast<an::VisionTransformer>(build_backbone("vit_t"));
  ASSERT_TRUE(net);
  torch::NoGradGuard no_grad;
  const torch::Tensor images = torch::randn({3, 3, 112, 112});
  auto masked_rows = [&](const torch::Tensor& tokens) {  // [N,T]: token equals the mask token
    return tokens.eq(net->mask_token().to(tokens.scalar_type())).all(-1);
  };
  net->train();
  const torch::Tensor masked = masked_rows(net->forward_tokens(images));
  for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(masked[i].sum().item<int64_t>(), 15) << "image " << i;
  EXPECT_FALSE(torch::equal(masked[0], masked[1]));
  net->eval();
  EXPECT_EQ(masked_rows(net->forward_tokens(images)).sum().item<int64_t>(), 0);
  // Eval: deterministic, and an image's embedding does not depend on its batch.
  const torch::Tensor a = net->forward(images), b = net->forward(images.narrow(0, 1, 1));
  EXPECT_LT((a[1] - b[0]).abs().max().item<double>(), 1e-4 * a[1].abs().max().item<double>());
  EXPECT_THROW(net->forward(torch::zeros({1, 3, 96, 96})), arcforge::InputError);
  EXPECT_THROW(net->forward(torch::zeros({3, 112, 112})), arcforge::InputError);
}

// bf16 autocast (arcface_torch trains ViTs in fp16/bf16) keeps the embedding close to fp32: the
// attention scores and softmax stay in fp32.
TEST(Vit, Bf16AutocastStaysCloseToFp32) {
  torch::manual_seed(5);
  auto net = build_backbone("vit_t");
  net->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor images = torch::randn({2, 3, 112, 112});
  const torch::Tensor fp32 = net->forward(images);
  torch::Tensor bf16;
  {
    arcforge::compat::AutocastGuard autocast(torch::kCPU, true, at::kBFloat16);
    bf16 = net->forward(images).to(torch::kFloat);
  }
  const torch::Tensor cosine = torch::nn::functional::cosine_similarity(fp32, bf16);
  EXPECT_GT(cosine.min().item<double>(), 0.99);
}

TEST(Vit, TrainsAndReloads) {
  namespace fs = std::filesystem;
  const auto dir = (fs::temp_directory_path() / ("arcforge_vit_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  arcforge::train::TrainConfig c = arcforge::train::parse_config(
      "", {"model.arch=vit_t", "model.embedding_size=64", "data.num_identities=20", "train.batch_size=8",
           "train.steps=3", "train.threads=2", "train.device=cpu", "train.precision=bf16", "optimizer.name=adamw",
           "optimizer.lr=0.001", "checkpoint.dir=\"" + dir + "\"", "checkpoint.every=0", "eval.pairs=0"});
  const arcforge::train::TrainResult r = arcforge::train::run_training(c);
  EXPECT_EQ(r.steps, 3);
  EXPECT_TRUE(std::isfinite(r.final_loss));
  EXPECT_EQ(r.skipped_steps, 0);
  arcforge::train::TrainModules m = arcforge::train::load_modules_from_checkpoint(r.checkpoint);
  EXPECT_EQ(m.backbone->arch(), "vit_t");
#ifdef ARCFORGE_WITH_EXPORT
  try {
    arcforge::onnx_io::describe_backbone(*m.backbone);
    FAIL() << "ViT export is not implemented; describe_backbone must refuse it";
  } catch (const arcforge::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("vit_t"), std::string::npos) << e.what();
  }
#endif
  fs::remove_all(dir);
}
