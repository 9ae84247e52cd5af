// Importing Vision Transformer recognizers (train/export/vit_onnx_import.cpp and the reader's
// transformer mode), checked against independent references:
//
//   - our own vit_t export (one qkv Gemm, or the three of files written until 2026-12), batch norms
//     kept, imports back bit for bit; folded, it gives libtorch's double-precision outputs again
//     (and restores the two feature batch norms);
//   - PyTorch's own torch.onnx export of arcface_torch's ViT (torch_layout_export.py, when Debian's
//     python3-torch is installed) at opset 11 (LayerNorm spelled out as ReduceMean/Sub/Pow/...) and
//     17 (LayerNormalization) imports and reproduces PyTorch's saved outputs;
//   - the fuzz seed in that layout (tests/fuzz/make_onnx_seeds.py) reads as its layers, and a
//     near-miss LayerNorm pattern, a Clip other than ReLU6, a CNN/ViT mix-up, another depth or
//     width and another LayerNorm epsilon are InputErrors naming the file and the node;
//   - `arcforge import` writes a checkpoint from a ViT file and checks it against the file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#ifndef ARCFORGE_WITH_EXPORT

TEST(VitImport, NotBuilt) { GTEST_SKIP() << "built with ARCFORGE_DEPLOY=OFF: ONNX import is not compiled in"; }

#else

#include <cstdio>
#include <fstream>
#include <functional>
#include <string>

#include "child_process.hpp"
#include "export_test_util.hpp"
#include "train/export/onnx_graph_reader.hpp"
#include "train/export/onnx_import.hpp"
#include "train/export/onnx_proto_util.hpp"
#include "train/nn/vit.hpp"
#include "train/train/checkpoint.hpp"

namespace {

using namespace arcforge_export_test;

constexpr int kVitTLayers = 2 + 12 * 6 + 1 + 4;  // patch, pos; per block 2 norms + 4 linears; norm; head

// Every parameter and buffer equal, but the mask token (training only, not in an inference file).
void expect_same_weights(an::Backbone& a, an::Backbone& b) {
  for (const auto& p : a.named_parameters()) {
    if (p.key() == "mask_token") continue;
    EXPECT_TRUE(torch::equal(p.value(), b.named_parameters()[p.key()])) << p.key();
  }
  for (const auto& t : a.named_buffers()) {
    if (t.key().find("num_batches_tracked") != std::string::npos) continue;
    EXPECT_TRUE(torch::equal(t.value(), b.named_buffers()[t.key()])) << t.key();
  }
}

std::string import_error(const std::string& path, an::Backbone& target) {
  return message_of([&] { io::OnnxRecognizer::read(path).load_into(target); });
}

// A copy of `path` with `edit` applied to its model proto.
std::string edited(const std::string& path, const std::string& out, const std::function<void(onnx::ModelProto&)>& edit) {
  onnx::ModelProto model = io::read_model(path, std::size_t{1} << 31);
  edit(model);
  std::ofstream(out, std::ios::binary) << model.SerializeAsString();
  return out;
}

onnx::TensorProto* initializer(onnx::ModelProto& model, const std::string& name) {
  for (auto& t : *model.mutable_graph()->mutable_initializer()) {
    if (t.name() == name) return &t;
  }
  ADD_FAILURE() << "no initializer " << name;
  return nullptr;
}

// Files written now (one qkv Gemm) and by arcforge before 2026-12 (q, k and v as three Gemms).
TEST(VitImport, ExportedFilesImportBackKeptAndFolded) {
  Subject s = make_subject("vit_t");
  TempDir dir;
  for (const bool separate_qkv : {false, true}) {
    for (const bool fold : {false, true}) {
      const std::string label = std::string(fold ? "folded" : "kept") + (separate_qkv ? ", separate q/k/v" : "");
      const std::string path = dir.file(label + ".onnx");
      io::ExportOptions options;
      options.fold_batch_norm = fold;
      options.vit_separate_qkv = separate_qkv;
      io::export_onnx(*s.model, path, options);
      const auto recognizer = io::OnnxRecognizer::read(path);
      EXPECT_EQ(recognizer.embedding_size(), 64) << label;
      auto target = plain("vit_t", 64, fold ? 98 : 99);
      const io::ImportSummary summary = recognizer.load_into(*target);
      EXPECT_EQ(summary.batch_norms_restored, fold ? 2 : 0) << label;
      EXPECT_EQ(summary.layers, kVitTLayers - (fold ? 2 : 0)) << label;
      if (!fold) {
        expect_same_weights(*s.model, *target);
      } else {
        const Gap g = gap(reference(*target, s.x), s.expected);
        std::printf("[figures] vit_t %s import(export): libtorch(double) outputs differ by %.3g (scale %.3g)\n",
                    label.c_str(), g.max_abs, g.scale);
        EXPECT_LT(g.relative(), 1e-5) << label;
      }
    }
  }
}

TEST(VitImport, WrongArchitectureDepthWidthEpsilonAndActivationAreClearErrors) {
  TempDir dir;
  auto vit = build("vit_t", 64, 3);
  const std::string path = dir.file("vit_t.onnx");
  io::export_onnx(*vit, path, {});

  // A ViT file into a CNN, and a CNN file into a ViT.
  auto r18 = plain("r18", 64, 1);
  std::string e = import_error(path, *r18);
  EXPECT_NE(e.find(path + ": holds a Vision Transformer (LayerNorm at node 'blocks.0.norm1'"), std::string::npos) << e;
  EXPECT_NE(e.find("r18 is a CNN"), std::string::npos) << e;
  const std::string cnn = dir.file("r18.onnx");
  io::export_onnx(*r18, cnn, {});
  auto target = plain("vit_t", 64, 2);
  e = import_error(cnn, *target);
  EXPECT_NE(e.find(cnn + ": holds a CNN (no LayerNorm), but vit_t is a Vision Transformer"), std::string::npos) << e;

  // Another width (vit_s: 512) and other depths (11 and 13 blocks of vit_t's width).
  auto wider = plain("vit_s", 64, 2);
  e = import_error(path, *wider);
  EXPECT_NE(e.find("node 'patch_embed.proj' (Conv) [Conv, weight [256,3,9,9]"), std::string::npos) << e;
  EXPECT_NE(e.find("does not match vit_s layer 'patch_embed.proj': different weight shape [512,3,9,9]"), std::string::npos) << e;
  an::VitOptions shallow_options;
  shallow_options.depth = 11;
  an::VisionTransformer shallower("vit_t", shallow_options, 64);
  e = import_error(path, shallower);
  EXPECT_NE(e.find(path + ": holds 25 LayerNorms (12 blocks), but vit_t as built here has 11 blocks (23 LayerNorms)"),
            std::string::npos)
      << e;
  an::VitOptions deep_options;
  deep_options.depth = 13;
  an::VisionTransformer deeper("vit_t", deep_options, 64);
  e = import_error(path, deeper);
  EXPECT_NE(e.find("holds 25 LayerNorms (12 blocks), but vit_t as built here has 13 blocks"), std::string::npos) << e;
  // Nothing was written into the backbones the file did not fit.
  EXPECT_FALSE(torch::equal(shallower.named_parameters()["pos_embed"], vit->named_parameters()["pos_embed"]));

  // LayerNorm's epsilon acts on each row's variance: no parameter can absorb another one.
  const std::string eps = edited(path, dir.file("eps.onnx"), [](onnx::ModelProto& m) {
    for (auto& n : *m.mutable_graph()->mutable_node()) {
      if (n.name() != "blocks.3.norm2") continue;
      for (auto& a : *n.mutable_attribute()) {
        if (a.name() == "epsilon") a.set_f(1e-6f);
      }
    }
  });
  e = import_error(eps, *target);
  EXPECT_NE(e.find("node 'blocks.3.norm2' (LayerNormalization) [LayerNorm, 256 channels] does not match vit_t layer "
                   "'blocks.3.norm2': epsilon 0.000001, the layer's is 0.000010"),
            std::string::npos)
      << e;

  // The MLP's activation must be ReLU6.
  const std::string relu5 = edited(path, dir.file("relu5.onnx"), [](onnx::ModelProto& m) {
    *initializer(m, "mlp.relu6.max") = io::float_tensor("mlp.relu6.max", torch::full({}, 5.0f), {});
  });
  e = import_error(relu5, *target);
  EXPECT_NE(e.find(relu5 + ": node 'blocks.0.mlp.relu6' (Clip) is not a Clip to [0, 6]"), std::string::npos) << e;
  EXPECT_FALSE(torch::equal(target->named_parameters()["pos_embed"], vit->named_parameters()["pos_embed"]));
}

// The fuzz seed in PyTorch's layout: norm1 and the final norm spelled out, norm2 a
// LayerNormalization node, qkv split by Gather, ReLU6 as Clip, the feature head with its batch norms.
TEST(VitImport, TorchLayoutSeedReadsAsItsLayers) {
  const std::string seed = std::string(ARCFORGE_SOURCE_DIR) + "/tests/fuzz/corpus/fuzz_onnx_import/vit_torch_layout.onnx";
  const io::RecognizerGraph g = io::read_recognizer_graph(seed);
  using K = io::OnnxOpKind;
  std::vector<K> kinds;
  for (const auto& op : g.ops) kinds.push_back(op.kind);
  EXPECT_EQ(kinds, (std::vector<K>{K::conv, K::add_constant, K::layer_norm, K::linear, K::linear, K::add,
                                   K::layer_norm, K::linear, K::linear, K::add, K::layer_norm, K::linear,
                                   K::batch_norm, K::linear, K::batch_norm}));
  EXPECT_EQ(g.transformer_evidence, "#4 (ReduceMean, output 'norm1_mean')");
  EXPECT_EQ(g.ops[1].inputs, std::vector<std::string>{"pc"});  // through Reshape and Transpose
  EXPECT_EQ(g.ops[1].weight.sizes(), (std::vector<int64_t>{1, 4, 4}));
  const io::OnnxOp& norm1 = g.ops[2];
  EXPECT_EQ(norm1.inputs, std::vector<std::string>{"x0"});
  EXPECT_EQ(norm1.output, "h1");
  EXPECT_FLOAT_EQ(static_cast<float>(norm1.eps), 1e-5f);
  EXPECT_EQ(norm1.weight.numel(), 4);
  EXPECT_EQ(g.ops[3].weight.sizes(), (std::vector<int64_t>{12, 4}));  // qkv, MatMul's [in, out] turned
  EXPECT_EQ(g.ops[4].inputs, std::vector<std::string>{"qkv"});        // proj reads through the attention
  EXPECT_EQ(g.ops[4].bias.numel(), 4);
  EXPECT_EQ(g.ops[5].inputs, (std::vector<std::string>{"x0", "pm"}));  // the bias Add stands for its MatMul
  EXPECT_EQ(g.ops[8].inputs, std::vector<std::string>{"f1m"});         // fc2 reads fc1 through ReLU6
  EXPECT_EQ(g.ops[10].output, "hn");
  EXPECT_EQ(g.output, "y");

  // Near misses of the LayerNorm pattern are not read as one.
  TempDir dir;
  const auto reader_error = [&](const std::string& name, const std::function<void(onnx::ModelProto&)>& edit) {
    const std::string path = edited(seed, dir.file(name), edit);
    return message_of([&] { io::read_recognizer_graph(path); });
  };
  const auto set_constant = [](onnx::ModelProto& m, const std::string& output, float value) {
    for (auto& n : *m.mutable_graph()->mutable_node()) {
      if (n.op_type() == "Constant" && n.output(0) == output) {
        *n.mutable_attribute(0)->mutable_t() = io::float_tensor("c", torch::full({}, value), {});
      }
    }
  };
  std::string e = reader_error("cube.onnx", [&](onnx::ModelProto& m) { set_constant(m, "norm1_two", 3.0f); });
  EXPECT_NE(e.find("node #4 (ReduceMean, output 'norm1_mean') does not start a LayerNorm (the square is not Pow(d, 2))"),
            std::string::npos)
      << e;
  // Found by fuzz_onnx_import: a Pow with one input used to be read past its inputs.
  e = reader_error("unary_pow.onnx", [](onnx::ModelProto& m) {
    for (auto& n : *m.mutable_graph()->mutable_node()) {
      if (n.op_type() == "Pow" && n.output(0) == "norm1_sq") n.mutable_input()->RemoveLast();
    }
  });
  EXPECT_NE(e.find("(ReduceMean, output 'norm1_mean') does not start a LayerNorm (the square is not Pow(d, 2))"),
            std::string::npos)
      << e;
  // Found by fuzz_onnx_import: a MatMul with one input used to be read past its inputs.
  e = reader_error("unary_matmul.onnx", [](onnx::ModelProto& m) {
    for (auto& n : *m.mutable_graph()->mutable_node()) {
      if (n.op_type() == "MatMul" && n.output(0) == "scores") n.mutable_input()->RemoveLast();
    }
  });
  EXPECT_NE(e.find("(MatMul, output 'scores') has 1 inputs; MatMul takes two"), std::string::npos) << e;
  e = reader_error("axis.onnx", [](onnx::ModelProto& m) {
    for (auto& n : *m.mutable_graph()->mutable_node()) {
      if (n.output(0) == "norm_var") n.mutable_attribute(0)->set_ints(0, 1);
    }
  });
  EXPECT_NE(e.find("(ReduceMean, output 'norm_mean') does not start a LayerNorm (the variance is not a mean over the last axis)"),
            std::string::npos)
      << e;
  e = reader_error("scale.onnx", [](onnx::ModelProto& m) {
    *initializer(m, "scale") = io::float_tensor("scale", torch::ones({4}), {});
  });
  EXPECT_NE(e.find("(Mul, output 'scaled') scales activations by something other than a scalar"), std::string::npos) << e;
  e = reader_error("reciprocal.onnx", [](onnx::ModelProto& m) {  // scale / scores is no scaling
    for (auto& n : *m.mutable_graph()->mutable_node()) {
      if (n.output(0) != "scaled") continue;
      n.set_op_type("Div");
      n.set_input(0, "scale");
      n.set_input(1, "scores");
    }
  });
  EXPECT_NE(e.find("(Div, output 'scaled') scales activations by something other than a scalar"), std::string::npos) << e;

  // The position embedding may come first in its Add.
  const std::string swapped = edited(seed, dir.file("pos_first.onnx"), [](onnx::ModelProto& m) {
    for (auto& n : *m.mutable_graph()->mutable_node()) {
      if (n.output(0) == "x0") n.mutable_input()->SwapElements(0, 1);
    }
  });
  const io::RecognizerGraph s2 = io::read_recognizer_graph(swapped);
  EXPECT_EQ(s2.ops.at(1).kind, K::add_constant);
  EXPECT_EQ(s2.ops.at(1).inputs, std::vector<std::string>{"pc"});
}

// InsightFace's released ViTs are torch.onnx exports of arcface_torch. torch_layout_export.py builds
// that layout from its own PyTorch ViT with random LayerNorm, bias and batch norm parameters.
TEST(VitImport, PyTorchExporterLayoutAtOpset11And17) {
  if (std::system("/usr/bin/python3 -c 'import torch, numpy' > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with torch and numpy (Debian python3-torch) is not installed";
  }
  for (int opset : {11, 17}) {
    TempDir dir;
    const std::string onnx = dir.file("torch_vit_t.onnx");
    const std::string cmd = "OMP_NUM_THREADS=2 /usr/bin/python3 '" + std::string(ARCFORGE_SOURCE_DIR) +
                            "/tests/train/torch_layout_export.py' vit_t 128 '" + onnx + "' '" + dir.file("x.npy") +
                            "' '" + dir.file("y.npy") + "' " + std::to_string(opset) + " > '" + dir.file("log.txt") +
                            "' 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const auto recognizer = io::OnnxRecognizer::read(onnx);
    EXPECT_EQ(recognizer.embedding_size(), 128);
    auto b = plain("vit_t", 128, 5);
    const io::ImportSummary summary = recognizer.load_into(*b);
    EXPECT_NE(summary.producer.find("pytorch"), std::string::npos) << summary.producer;
    EXPECT_EQ(summary.layers, kVitTLayers);
    EXPECT_EQ(summary.batch_norms_restored, 0);

    const arcforge::NpyArray x = arcforge::read_npy(dir.file("x.npy"));
    const arcforge::NpyArray y = arcforge::read_npy(dir.file("y.npy"));
    const torch::Tensor input = torch::tensor(x.data).view(x.shape);
    const torch::Tensor pytorch = torch::tensor(y.data).view(y.shape);
    const Gap g = gap(reference(*b, input), pytorch);
    std::printf("[figures] PyTorch-exported vit_t (opset %d) imported: libtorch(double) vs PyTorch max abs diff %.3g "
                "(scale %.3g)\n",
                opset, g.max_abs, g.scale);
    EXPECT_LT(g.relative(), 1e-5);
    const Gap r = gap(run_runtime(onnx, input), pytorch);
    std::printf("[figures] the same file on arcforge's runtime vs PyTorch: max abs diff %.3g\n", r.max_abs);
    EXPECT_LT(r.relative(), kTolerance);
  }
}

TEST(VitImportCli, ImportWritesACheckpointAndChecksItAgainstTheFile) {
  if (!fs::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  TempDir dir;
  const std::string onnx = dir.file("vit_t.onnx"), ckpt = dir.file("vit_t.pt");
  std::string out;
  ASSERT_EQ(arcforge::test::run_cli("export --arch vit_t --random-init --seed 4 --embedding-size 128 --fold-bn --no-verify "
                                    "--onnx " + onnx + " --threads 2",
                                    &out),
            0)
      << out;
  ASSERT_EQ(arcforge::test::run_cli("import " + onnx + " --arch vit_t --out " + ckpt + " --threads 2 --json", &out), 0) << out;
  const nlohmann::json j = last_json_line(out);
  EXPECT_EQ(j.at("arch").get<std::string>(), "vit_t");
  EXPECT_EQ(j.at("embedding_size").get<int>(), 128);
  EXPECT_EQ(j.at("layers").get<int>(), kVitTLayers - 2);
  EXPECT_EQ(j.at("batch_norms_restored").get<int>(), 2);
  EXPECT_LT(j.at("parity").at("relative").get<double>(), kTolerance);
  arcforge::train::TrainConfig stored;
  auto imported = arcforge::train::load_modules_from_checkpoint(ckpt, &stored);
  EXPECT_EQ(stored.model.arch, "vit_t");
  const torch::Tensor x = images(2, 6);
  EXPECT_LT(gap(reference(*imported.backbone, x), run_runtime(onnx, x)).relative(), kTolerance);

  // Without the check, nothing covers the attention's head count and scale: the import says so.
  ASSERT_EQ(arcforge::test::run_cli("import " + onnx + " --arch vit_t --out " + ckpt + " --no-verify", &out), 0) << out;
  EXPECT_NE(out.find("--no-verify: the attention's head count and scale, which carry no weights, are not checked"),
            std::string::npos)
      << out;

  // Importing it as a CNN fails with one line naming the file, and writes nothing.
  const std::string wrong = dir.file("wrong.pt");
  EXPECT_EQ(arcforge::test::run_cli("import " + onnx + " --arch r50 --out " + wrong + " --threads 2", &out), 1);
  EXPECT_NE(out.find("arcforge: error: " + onnx + ": holds a Vision Transformer"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(wrong));
}

}  // namespace

#endif  // ARCFORGE_WITH_EXPORT
