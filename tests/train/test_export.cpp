// ONNX export and import of the backbones (train/export), checked against an independent
// reference: libtorch's own eval-mode forward of the same module in double precision.
//
//   - every export passes libonnx's checker and strict shape inference;
//   - arcforge's runtime on the exported file matches the reference at batch 1 and 3, with batch
//     norms kept and folded (max abs diff below 1e-4 of the output scale), and ONNX Runtime does
//     too when node + onnxruntime-node are installed;
//   - import(export(model)) gives back every weight bit for bit (kept) or the same outputs (folded);
//   - a PyTorch torch.onnx export (InsightFace's layout, built by torch_layout_export.py when
//     python3-torch is installed) imports and reproduces PyTorch's own outputs;
//   - a malformed or mismatched file is an InputError naming the file and the first bad node;
//   - the CLI: export from a checkpoint and from --random-init, the sidecar, import to a checkpoint.
//
// The models get random batch norm parameters and PReLU slopes, and running statistics measured on
// a batch (as after training), so that folding and import have something to get wrong.
#include <gtest/gtest.h>
#include <torch/torch.h>

#ifndef ARCFORGE_WITH_EXPORT

TEST(OnnxExport, NotBuilt) { GTEST_SKIP() << "built with ARCFORGE_DEPLOY=OFF: ONNX export/import is not compiled in"; }

#else

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "arcforge/common/npy.hpp"
#include "arcforge/runtime/model.hpp"
#include "train/export/batch_norm_calibration.hpp"
#include "train/export/onnx_check.hpp"
#include "train/export/onnx_graph_reader.hpp"
#include "train/export/onnx_import.hpp"
#include "train/export/onnx_writer.hpp"
#include "arcforge/common/model_sidecar.hpp"
#include "child_process.hpp"
#include "export_test_util.hpp"
#include "train/nn/backbone.hpp"
#include "train/train/checkpoint.hpp"

namespace {

using namespace arcforge_export_test;

void expect_same_state(an::Backbone& a, an::Backbone& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  for (const auto& t : a.named_buffers()) {
    if (t.key().find("num_batches_tracked") != std::string::npos) continue;
    EXPECT_TRUE(torch::equal(t.value(), b.named_buffers()[t.key()])) << t.key();
  }
}

// Exports the subject with batch norms kept and folded and checks each file: the ONNX checker, the
// declared shapes, which BatchNormalization nodes remain (kept: one per module; folded: only
// IResNet's pre-activation batch norms, one per block), and the runtime against the reference at
// batch 1 and 3. Then imports both files into other weights: kept gives back every bit, folded
// the same outputs. Returns the kept file's path.
std::string check_export_and_import(Subject& s, const std::string& arch, int pre_activation_bns, const TempDir& dir) {
  const int bn_modules = count_batch_norms(*s.model);
  std::string kept_path;
  for (bool fold : {false, true}) {
    const std::string label = arch + (fold ? " folded" : " kept");
    const std::string path = dir.file(arch + (fold ? "_folded.onnx" : "_kept.onnx"));
    io::ExportOptions options;
    options.fold_batch_norm = fold;
    const io::ExportSummary summary = io::export_onnx(*s.model, path, options);
    EXPECT_NO_THROW(io::check_onnx_file(path)) << label;
    EXPECT_EQ(summary.folded_batch_norms, fold ? bn_modules - pre_activation_bns : 0) << label;

    const auto model = arcforge::runtime::Model::load(path, {.threads = 2});
    EXPECT_EQ(model.inputs().at(0).shape, (std::vector<int64_t>{-1, 3, 112, 112})) << label;
    EXPECT_EQ(model.outputs().at(0).shape, (std::vector<int64_t>{-1, 64})) << label;
    const auto& ops = model.op_histogram();
    const int bn_nodes = ops.count("BatchNormalization") ? ops.at("BatchNormalization") : 0;
    EXPECT_EQ(bn_nodes, fold ? pre_activation_bns : bn_modules) << label;
    const Gap g3 = gap(run_runtime(model, s.x), s.expected);
    const Gap g1 = gap(run_runtime(model, s.x.slice(0, 0, 1)), s.expected.slice(0, 0, 1));
    std::printf("[figures] %s: runtime vs libtorch(double) max abs diff %.3g (batch 3), %.3g (batch 1), "
                "output scale %.3g\n",
                label.c_str(), g3.max_abs, g1.max_abs, g3.scale);
    EXPECT_LT(g3.relative(), kTolerance) << label;
    EXPECT_LT(g1.relative(), kTolerance) << label;

    const auto recognizer = io::OnnxRecognizer::read(path);
    EXPECT_EQ(recognizer.embedding_size(), 64);
    auto target = plain(arch, 64, fold ? 98 : 99);  // other weights, untouched batch norms
    const io::ImportSummary imported = recognizer.load_into(*target);
    EXPECT_EQ(imported.batch_norms_restored, summary.folded_batch_norms) << label;
    if (!fold) {
      expect_same_state(*s.model, *target);
      kept_path = path;
    } else {
      const Gap g = gap(reference(*target, s.x.slice(0, 0, 1)), s.expected.slice(0, 0, 1));
      std::printf("[figures] %s import(export): libtorch(double) outputs differ by %.3g (scale %.3g)\n",
                  label.c_str(), g.max_abs, g.scale);
      EXPECT_LT(g.relative(), 1e-5) << label;
    }
  }
  return kept_path;
}

// ---- export, import, parity ------------------------------------------------------------------

TEST(OnnxExport, R18ParityRoundTripAndMismatches) {
  Subject s = make_subject("r18");
  TempDir dir;
  const std::string r18 = check_export_and_import(s, "r18", /*pre_activation_bns=*/8, dir);
  {
    // r34 has a third block in layer1 where r18 goes on to layer2 (64 -> 128 channels).
    auto r34 = plain("r34", 64, 3);
    const torch::Tensor before = r34->named_parameters()["layer1.0.conv1.weight"].clone();
    const std::string m = message_of([&] { io::OnnxRecognizer::read(r18).load_into(*r34); });
    EXPECT_NE(m.find(r18), std::string::npos) << m;
    EXPECT_NE(m.find("'layer2.0.conv1'"), std::string::npos) << m;
    EXPECT_NE(m.find("layer1.2.conv1"), std::string::npos) << m;
    // Nothing is written unless the whole file matches.
    EXPECT_TRUE(torch::equal(before, r34->named_parameters()["layer1.0.conv1.weight"]));
  }
  {
    auto wide = plain("r18", 128, 3);
    const std::string m = message_of([&] { io::OnnxRecognizer::read(r18).load_into(*wide); });
    EXPECT_NE(m.find("'fc'"), std::string::npos) << m;
  }
}

TEST(OnnxExport, MbfParityRoundTripFixedBatchOnnxRuntimeAndMismatch) {
  Subject s = make_subject("mbf");
  TempDir dir;
  const std::string mbf = check_export_and_import(s, "mbf", /*pre_activation_bns=*/0, dir);

  // A fixed batch and the newest opset this libonnx knows.
  io::ExportOptions options;
  options.batch = 3;
  options.opset = 17;
  options.fold_batch_norm = true;
  const std::string fixed = dir.file("fixed.onnx");
  io::export_onnx(*s.model, fixed, options);
  EXPECT_NO_THROW(io::check_onnx_file(fixed));
  const auto model = arcforge::runtime::Model::load(fixed, {.threads = 2});
  EXPECT_EQ(model.inputs().at(0).shape, (std::vector<int64_t>{3, 3, 112, 112}));
  EXPECT_LT(gap(run_runtime(model, s.x), s.expected).relative(), kTolerance);

  // A MobileFaceNet file imported as an IResNet fails at the very first node.
  auto r18 = plain("r18", 64, 3);
  const std::string m = message_of([&] { io::OnnxRecognizer::read(mbf).load_into(*r18); });
  EXPECT_NE(m.find(mbf), std::string::npos) << m;
  EXPECT_NE(m.find("'layers.0.layers.0'"), std::string::npos) << m;

  // ONNX Runtime, the reference runtime InsightFace deploys with, on the fixed-batch file.
  EXPECT_ONNXRUNTIME_MATCHES(fixed, s.x, s.expected, dir, "mbf folded");
}

TEST(OnnxExport, BadOptionsAndFilesAreClearErrors) {
  auto mbf = plain("mbf", 64, 1);
  io::ExportOptions options;
  options.opset = 12;
  EXPECT_THROW(io::export_onnx_bytes(*mbf, options), arcforge::ConfigError);
  options.opset = 99;
  EXPECT_THROW(io::export_onnx_bytes(*mbf, options), arcforge::ConfigError);

  TempDir dir;
  const std::string garbage = dir.file("garbage.onnx");
  std::ofstream(garbage) << "definitely not protobuf \x01\x02\x03";
  EXPECT_NE(message_of([&] { io::check_onnx_file(garbage); }).find(garbage), std::string::npos);
  EXPECT_NE(message_of([&] { io::OnnxRecognizer::read(garbage); }).find(garbage), std::string::npos);

  // A real export cut in half.
  const std::string bytes = io::export_onnx_bytes(*mbf, {});
  const std::string truncated = dir.file("truncated.onnx");
  std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_NE(message_of([&] { io::OnnxRecognizer::read(truncated); }).find(truncated), std::string::npos);

  const std::string missing = dir.file("missing.onnx");
  EXPECT_NE(message_of([&] { io::OnnxRecognizer::read(missing); }).find(missing), std::string::npos);
}

// InsightFace's released recognizers are PyTorch exports of arcface_torch. When Debian's
// python3-torch is installed, torch_layout_export.py builds that layout from its own PyTorch
// MobileFaceNet (same module names; Conv+BN folded by torch.onnx into onnx::Conv_* initializers,
// the Linear as MatMul/Gemm, opset 11) and saves PyTorch's outputs, which the import must reproduce.
TEST(OnnxImport, PyTorchExporterLayout) {
  if (std::system("/usr/bin/python3 -c 'import torch, numpy' > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with torch and numpy (Debian python3-torch) is not installed";
  }
  TempDir dir;
  const std::string onnx = dir.file("torch_mbf.onnx");
  const std::string cmd = "OMP_NUM_THREADS=1 /usr/bin/python3 '" + std::string(ARCFORGE_SOURCE_DIR) +
                          "/tests/train/torch_layout_export.py' mbf 128 '" + onnx + "' '" + dir.file("x.npy") +
                          "' '" + dir.file("y.npy") + "' > '" + dir.file("log.txt") + "' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto recognizer = io::OnnxRecognizer::read(onnx);
  EXPECT_EQ(recognizer.embedding_size(), 128);
  auto b = plain("mbf", 128, 5);
  const io::ImportSummary summary = recognizer.load_into(*b);
  EXPECT_NE(summary.producer.find("pytorch"), std::string::npos) << summary.producer;
  // PyTorch folds every BatchNorm2d into its Conv; the embedding BatchNorm1d stays.
  EXPECT_EQ(summary.batch_norms_restored, count_batch_norms(*b) - 1);

  const arcforge::NpyArray x = arcforge::read_npy(dir.file("x.npy"));
  const arcforge::NpyArray y = arcforge::read_npy(dir.file("y.npy"));
  const torch::Tensor input = torch::tensor(x.data).view(x.shape);
  const torch::Tensor pytorch = torch::tensor(y.data).view(y.shape);
  const Gap g = gap(reference(*b, input), pytorch);
  std::printf("[figures] PyTorch-exported mbf imported: libtorch(double) vs PyTorch max abs diff %.3g (scale %.3g)\n",
              g.max_abs, g.scale);
  EXPECT_LT(g.relative(), 1e-5);
  EXPECT_LT(gap(run_runtime(onnx, input), pytorch).relative(), kTolerance);
}

// The seeds of fuzz_onnx_import (tests/fuzz/make_onnx_seeds.py) read as the recognizers they were
// written as, so the fuzzer starts from graphs that get past the reader: every weight encoding
// (raw float, float_data, raw fp16, raw double, a Constant node, an Identity of an initializer),
// Gemm with transB and MatMul + Add, and data paths through Flatten, Dropout and Reshape.
TEST(OnnxImport, FuzzSeedsReadAsTheirLayouts) {
  const std::string corpus = std::string(ARCFORGE_SOURCE_DIR) + "/tests/fuzz/corpus/fuzz_onnx_import/";
  using K = io::OnnxOpKind;
  const auto kinds = [](const io::RecognizerGraph& g) {
    std::vector<K> k;
    for (const auto& op : g.ops) k.push_back(op.kind);
    return k;
  };
  const io::RecognizerGraph block = io::read_recognizer_graph(corpus + "iresnet_block.onnx");
  EXPECT_EQ(kinds(block), (std::vector<K>{K::conv, K::batch_norm, K::prelu, K::batch_norm, K::conv, K::batch_norm,
                                          K::prelu, K::conv, K::batch_norm, K::conv, K::batch_norm, K::add,
                                          K::linear, K::batch_norm}));
  const io::OnnxOp& add = block.ops[11];
  EXPECT_EQ(add.inputs, (std::vector<std::string>{"b3", "db"}));
  const io::OnnxOp& fc = block.ops[12];
  EXPECT_EQ(fc.inputs, std::vector<std::string>{"sum"});  // through Dropout and Flatten
  EXPECT_EQ(fc.weight.sizes(), (std::vector<int64_t>{3, 8}));  // transB: stored [out, in]
  EXPECT_EQ(fc.bias.numel(), 3);
  EXPECT_EQ(block.ops[2].weight.numel(), 2);  // PReLU slopes in float_data
  EXPECT_EQ(block.ops[7].strides, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(block.output, "y");

  const io::RecognizerGraph head = io::read_recognizer_graph(corpus + "matmul_head.onnx");
  EXPECT_EQ(kinds(head), (std::vector<K>{K::conv, K::linear}));
  EXPECT_EQ(head.ops[0].group, 2);
  EXPECT_EQ(head.ops[0].weight.sizes(), (std::vector<int64_t>{2, 1, 3, 3}));  // from the Constant node
  EXPECT_EQ(head.ops[0].bias.numel(), 2);                                   // through Identity
  EXPECT_EQ(head.ops[1].inputs, std::vector<std::string>{"c"});              // through Reshape
  EXPECT_EQ(head.ops[1].weight.sizes(), (std::vector<int64_t>{4, 8}));       // MatMul's [in, out] turned
  EXPECT_EQ(head.ops[1].weight.scalar_type(), torch::kFloat);                // from fp16
  EXPECT_EQ(head.ops[1].bias.numel(), 4);                                    // the Add's double bias
  EXPECT_EQ(head.output, "m");
}

// Two graphs fuzz_onnx_import found (kept in its corpus): the reader used to pass them on, and the
// importer's wiring check then blamed the architecture. Now the reader names the file's problem.
TEST(OnnxImport, ReaderRejectsUncomputedOutputsAndShapeArithmeticOnTheDataPath) {
  const std::string corpus = std::string(ARCFORGE_SOURCE_DIR) + "/tests/fuzz/corpus/fuzz_onnx_import/";
  const auto error_of = [&](const std::string& name) {
    try {
      io::read_recognizer_graph(corpus + name);
    } catch (const arcforge::InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string output = error_of("found_output_not_computed.onnx");
  EXPECT_NE(output.find("found_output_not_computed.onnx"), std::string::npos) << output;
  EXPECT_NE(output.find("graph output 'y' is not computed by any layer"), std::string::npos) << output;
  const std::string shape = error_of("found_layer_fed_by_shape_arithmetic.onnx");
  EXPECT_NE(shape.find("(MatMul"), std::string::npos) << shape;
  EXPECT_NE(shape.find("reads 'r' as data, but no layer computes it"), std::string::npos) << shape;
}

// ---- the CLI ----------------------------------------------------------------------------------

using arcforge::test::run_cli;

TEST(OnnxExportCli, RandomInitExportWritesSidecarAndIsSeeded) {
  if (!fs::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  TempDir dir;
  const std::string onnx = dir.file("mbf.onnx");
  std::string out;
  ASSERT_EQ(run_cli("export --arch mbf --random-init --seed 7 --embedding-size 128 --onnx " + onnx +
                        " --batch dynamic --threads 2 --json",
                    &out),
            0)
      << out;
  const nlohmann::json j = last_json_line(out);
  EXPECT_LT(j.at("parity").at("relative").get<double>(), kTolerance);
  // Calibrated batch norm statistics give embeddings of a trained network's scale (the raw
  // initialiser gives MobileFaceNet outputs around 1e-6, deep in float's slow denormal range).
  const double scale = j.at("parity").at("output_scale").get<double>();
  EXPECT_GT(scale, 0.1);
  EXPECT_LT(scale, 1000.0);

  const io::ModelSidecar s = io::read_sidecar(dir.file("mbf.json"));
  EXPECT_EQ(s.input_colour, "RGB");
  EXPECT_EQ(s.mean, (std::array<double, 3>{127.5, 127.5, 127.5}));
  EXPECT_EQ(s.std, (std::array<double, 3>{127.5, 127.5, 127.5}));
  EXPECT_EQ(s.embedding_size, 128);
  EXPECT_EQ(s.input_size, (std::array<int64_t, 2>{112, 112}));
  EXPECT_EQ(s.arch, "mbf");
  EXPECT_EQ(s.source, "random-init (seed 7)");
  EXPECT_EQ(s.batch, "dynamic");
  // The template as ../shared/DESIGN.md states it.
  const double design[5][2] = {{38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366}, {41.5493, 92.3655},
                               {70.7299, 92.2041}};
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(s.landmark_template[k][0], design[k][0]);
    EXPECT_EQ(s.landmark_template[k][1], design[k][1]);
  }
  // Seeded: the same seed in this process builds the weights the file holds.
  torch::manual_seed(7);
  auto same = an::make_backbone({"mbf", 128});
  io::calibrate_batch_norm_statistics(*same, 7);
  const torch::Tensor x = images(2, 3);
  EXPECT_LT(gap(run_runtime(onnx, x), reference(*same, x)).relative(), kTolerance);
}

TEST(OnnxExportCli, CheckpointExportThenImportRoundTrips) {
  if (!fs::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  TempDir dir;
  arcforge::train::TrainConfig config;
  config.model.arch = "mbf";
  config.model.embedding_size = 64;
  config.data.num_identities = 10;
  arcforge::train::TrainModules modules = arcforge::train::make_modules(config);
  randomise(*modules.backbone, 21);
  const std::string ckpt = dir.file("trained.pt");
  arcforge::train::save_checkpoint(ckpt, config, modules, nullptr, {});
  const torch::Tensor x = images(2, 4);
  const torch::Tensor expected = reference(*modules.backbone, x);

  std::string out;
  const std::string onnx = dir.file("model.onnx");
  // The test checks the runtime itself; the import below runs the CLI's own check.
  ASSERT_EQ(run_cli("export " + ckpt + " --onnx " + onnx + " --fold-bn --no-verify --threads 2 --json", &out), 0)
      << out;
  EXPECT_EQ(last_json_line(out).at("folded_batch_norms").get<int>(), count_batch_norms(*modules.backbone));
  EXPECT_EQ(io::read_sidecar(dir.file("model.json")).source, ckpt);
  EXPECT_LT(gap(run_runtime(onnx, x), expected).relative(), kTolerance);

  const std::string back = dir.file("imported.pt");
  ASSERT_EQ(run_cli("import " + onnx + " --arch mbf --out " + back + " --threads 2 --json", &out), 0) << out;
  const nlohmann::json j = last_json_line(out);
  EXPECT_EQ(j.at("embedding_size").get<int>(), 64);
  EXPECT_LT(j.at("parity").at("relative").get<double>(), kTolerance);
  arcforge::train::TrainConfig stored;
  auto imported = arcforge::train::load_modules_from_checkpoint(back, &stored);
  EXPECT_EQ(stored.model.arch, "mbf");
  EXPECT_EQ(stored.model.embedding_size, 64);
  const Gap g = gap(reference(*imported.backbone, x), expected);
  EXPECT_LT(g.relative(), 1e-5);

  // A bad file fails with one line naming it, and writes nothing.
  const std::string garbage = dir.file("garbage.onnx");
  std::ofstream(garbage) << "not a model";
  const std::string wrong = dir.file("wrong.pt");
  EXPECT_EQ(run_cli("import " + garbage + " --arch mbf --out " + wrong + " --threads 2", &out), 1);
  EXPECT_NE(out.find("arcforge: error: " + garbage + ": "), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(wrong));
}

}  // namespace

#endif  // ARCFORGE_WITH_EXPORT
