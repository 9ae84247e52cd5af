// ONNX export of the Vision Transformers (train/export/vit_onnx_graph.cpp), checked against
// libtorch's own eval-mode forward of the same module in double precision:
//
//   - vit_t with random LayerNorm, BatchNorm and bias parameters exports at opset 17, passes the
//     checker, and runs in arcforge's runtime within 1e-4 of the output scale at batch 1 and 3,
//     batch norms kept and folded, q, k and v as one Gemm (torch.onnx's layout) and as three (the
//     layout written until 2026-12), every block's attention on the runtime's fused kernel; ONNX
//     Runtime on the same files too;
//   - the runtime's bf16 mode stays within cosine 0.999 of its fp32;
//   - an opset below 17 and a parameter the writer does not know are clear errors; the CLI exports
//     a seeded random ViT and checks it against libtorch. (Importing ViTs: test_vit_import.cpp.)
#include <gtest/gtest.h>
#include <torch/torch.h>

#ifndef ARCFORGE_WITH_EXPORT

TEST(VitExport, NotBuilt) { GTEST_SKIP() << "built with ARCFORGE_DEPLOY=OFF: ONNX export is not compiled in"; }

#else

#include <cstdio>
#include <string>

#include "child_process.hpp"
#include "export_test_util.hpp"
#include "arcforge/common/model_sidecar.hpp"
#include "train/export/onnx_check.hpp"

namespace {

using namespace arcforge_export_test;

constexpr int kDepth = 12;  // vit_t

int ops(const arcforge::runtime::Model& model, const std::string& op) {
  const auto& h = model.op_histogram();
  return h.count(op) ? h.at(op) : 0;
}

// How many of the attention blocks a run at `x` computes with the runtime's fused kernel: the fused
// step carries the q k^T product's name ("blocks.i.attn.scores") and no softmax step remains.
int fused_attention_steps(const arcforge::runtime::Model& model, const torch::Tensor& x) {
  auto session = model.new_session();
  std::vector<arcforge::runtime::StepTiming> steps;
  session.run({runtime_tensor(x)}, steps);
  at::set_num_threads(2);  // the runtime sets the OpenMP team size of this thread
  int fused = 0;
  for (const auto& step : steps) {
    if (step.node.find(".attn.softmax") != std::string::npos) return 0;
    fused += step.node.find(".attn.scores") != std::string::npos && step.kernel == "loop";
  }
  return fused;
}

struct VitFile {
  const char* label;
  bool fold, separate_qkv;
};

TEST(VitExport, ParityWithLibtorchKeptAndFoldedAndWithOnnxRuntime) {
  Subject s = make_subject("vit_t");
  TempDir dir;
  std::string kept, separate;
  // One qkv Gemm (the layout written now, torch.onnx's), and the three Gemms written until 2026-12.
  for (const VitFile f : {VitFile{"vit_t kept", false, false}, VitFile{"vit_t folded", true, false},
                          VitFile{"vit_t kept, separate q/k/v", false, true}}) {
    const std::string label = f.label;
    const std::string path = dir.file(label + ".onnx");
    io::ExportOptions options;
    options.fold_batch_norm = f.fold;
    options.vit_separate_qkv = f.separate_qkv;
    const io::ExportSummary summary = io::export_onnx(*s.model, path, options);
    EXPECT_EQ(summary.opset, io::kVitMinimumOpset) << label;
    EXPECT_EQ(summary.folded_batch_norms, f.fold ? 2 : 0) << label;
    // Per block qkv (or q, k, v), proj, fc1 and fc2; then the two feature Gemms.
    EXPECT_EQ(summary.op_counts.at("Gemm"), kDepth * (f.separate_qkv ? 6 : 4) + 2) << label;
    EXPECT_EQ(summary.op_counts.count("Gather") ? summary.op_counts.at("Gather") : 0, f.separate_qkv ? 0 : 3 * kDepth)
        << label;
    EXPECT_NO_THROW(io::check_onnx_file(path)) << label;

    const auto model = arcforge::runtime::Model::load(path, {.threads = 2});
    EXPECT_EQ(model.inputs().at(0).shape, (std::vector<int64_t>{-1, 3, 112, 112})) << label;
    EXPECT_EQ(model.outputs().at(0).shape, (std::vector<int64_t>{-1, 64})) << label;
    EXPECT_EQ(ops(model, "LayerNormalization"), 2 * kDepth + 1) << label;
    EXPECT_EQ(ops(model, "Softmax"), kDepth) << label;
    EXPECT_EQ(ops(model, "BatchNormalization"), f.fold ? 0 : 2) << label;
    EXPECT_EQ(fused_attention_steps(model, s.x), kDepth) << label << ": every block's attention should run fused";
    const Gap g3 = gap(run_runtime(model, s.x), s.expected);
    const Gap g1 = gap(run_runtime(model, s.x.slice(0, 0, 1)), s.expected.slice(0, 0, 1));
    std::printf("[figures] %s: runtime vs libtorch(double) max abs diff %.3g (batch 3), %.3g (batch 1), "
                "output scale %.3g\n",
                label.c_str(), g3.max_abs, g1.max_abs, g3.scale);
    EXPECT_LT(g3.relative(), kTolerance) << label;
    EXPECT_LT(g1.relative(), kTolerance) << label;
    if (!f.fold) (f.separate_qkv ? separate : kept) = path;
  }

  // bf16: the Gemms in bf16 with fp32 accumulation; LayerNorm, softmax and attention in fp32.
  const auto fp32 = arcforge::runtime::Model::load(kept, {.threads = 2});
  arcforge::runtime::Options bf16_options;
  bf16_options.threads = 2;
  bf16_options.precision = arcforge::runtime::Precision::bf16;
  const auto bf16 = arcforge::runtime::Model::load(kept, bf16_options);
  const torch::Tensor a = torch::nn::functional::normalize(run_runtime(fp32, s.x), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const torch::Tensor b = torch::nn::functional::normalize(run_runtime(bf16, s.x), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const double min_cosine = (a * b).sum(1).min().item<double>();
  std::printf("[figures] vit_t runtime bf16 vs fp32: min cosine %.6f over 3 images\n", min_cosine);
  EXPECT_GT(min_cosine, 0.999);

  EXPECT_ONNXRUNTIME_MATCHES(kept, s.x, s.expected, dir, "vit_t kept");
  EXPECT_ONNXRUNTIME_MATCHES(separate, s.x, s.expected, dir, "vit_t kept, separate q/k/v");
}

TEST(VitExport, OpsetAndUnknownParameterAreClearErrors) {
  auto vit = plain("vit_t", 64, 1);
  io::ExportOptions options;
  options.opset = 16;
  try {
    io::export_onnx_bytes(*vit, options);
    ADD_FAILURE() << "opset 16 exported a ViT";
  } catch (const arcforge::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("needs opset 17"), std::string::npos) << e.what();
  }

  // A parameter the writer has no rule for (a module added to the ViT later) stops the export.
  vit->register_parameter("stray_scale", torch::ones({1}));
  try {
    io::export_onnx_bytes(*vit, {});
    ADD_FAILURE() << "a ViT with an unknown parameter exported";
  } catch (const arcforge::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'stray_scale'"), std::string::npos) << e.what();
  }
}

TEST(VitExportCli, RandomInitExportChecksItselfAgainstLibtorch) {
  if (!fs::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  TempDir dir;
  const std::string onnx = dir.file("vit_t.onnx");
  std::string out;
  ASSERT_EQ(arcforge::test::run_cli("export --arch vit_t --random-init --seed 3 --embedding-size 128 --fold-bn --onnx " +
                                        onnx + " --threads 2 --json",
                                    &out),
            0)
      << out;
  const nlohmann::json j = last_json_line(out);
  EXPECT_EQ(j.at("opset").get<int>(), 17);
  EXPECT_EQ(j.at("folded_batch_norms").get<int>(), 2);
  EXPECT_LT(j.at("parity").at("relative").get<double>(), kTolerance);
  EXPECT_EQ(io::read_sidecar(dir.file("vit_t.json")).opset, 17);
}

}  // namespace

#endif  // ARCFORGE_WITH_EXPORT
