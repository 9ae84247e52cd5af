// `arcforge export`: a checkpoint's backbone (or a seeded untrained one) as an ONNX face recognizer
// plus its JSON sidecar, checked by libonnx's checker and against libtorch through our runtime.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "arcforge/common/parallel.hpp"
#include "arcforge/common/error.hpp"
#include "commands.hpp"
#include "parity_json.hpp"
#include "train/export/batch_norm_calibration.hpp"
#include "train/export/onnx_writer.hpp"
#include "train/export/runtime_parity.hpp"
#include "arcforge/common/model_sidecar.hpp"
#include "train/train/checkpoint.hpp"

namespace arcforge::cli {
namespace {

struct ExportArgs {
  std::string checkpoint;
  std::string onnx;
  bool fold_bn = false;
  int opset = 0;  // the lowest the backbone needs
  std::string batch = "dynamic";
  std::string arch;
  bool random_init = false;
  int64_t seed = 0;
  int64_t embedding_size = 512;
  bool no_verify = false;
  int threads = 0;
  bool json = false;
};

int64_t parse_batch(const std::string& text) {
  if (text == "dynamic") return 0;
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || value <= 0 || value > 65536) {
    throw ConfigError("--batch: expected 'dynamic' or a batch size in 1..65536, got '" + text + "'");
  }
  return value;
}

std::shared_ptr<nn::Backbone> backbone_for(const ExportArgs& a, std::string& source) {
  if (a.random_init == !a.checkpoint.empty()) {
    throw ConfigError("export: give either a checkpoint or --arch NAME --random-init");
  }
  if (!a.random_init && !a.arch.empty()) {
    throw ConfigError("export: --arch is for --random-init; a checkpoint knows its own architecture");
  }
  if (a.random_init) {
    if (a.arch.empty()) throw ConfigError("export --random-init needs --arch NAME");
    torch::manual_seed(static_cast<uint64_t>(a.seed));
    nn::BackboneOptions options;
    options.arch = a.arch;
    options.embedding_size = a.embedding_size;
    source = "random-init (seed " + std::to_string(a.seed) + ")";
    std::shared_ptr<nn::Backbone> backbone = nn::make_backbone(options);
    onnx_io::calibrate_batch_norm_statistics(*backbone, static_cast<uint64_t>(a.seed));
    return backbone;
  }
  train::TrainConfig config;
  train::TrainModules modules = train::load_modules_from_checkpoint(a.checkpoint, &config);
  source = a.checkpoint;
  return modules.backbone;
}

void run(const ExportArgs& a) {
  const int threads = worker_count(a.threads);
  at::set_num_threads(threads);
  onnx_io::ExportOptions options;
  options.fold_batch_norm = a.fold_bn;
  options.opset = a.opset;
  options.batch = parse_batch(a.batch);
  std::shared_ptr<nn::Backbone> backbone = backbone_for(a, options.source);
  backbone->to(torch::kCPU);

  const onnx_io::ExportSummary summary = onnx_io::export_onnx(*backbone, a.onnx, options);
  onnx_io::ModelSidecar sidecar;
  sidecar.embedding_size = backbone->embedding_size();
  sidecar.arch = backbone->arch();
  sidecar.source = options.source;
  sidecar.batch = options.batch > 0 ? std::to_string(options.batch) : "dynamic";
  sidecar.batch_norm = a.fold_bn ? "folded" : "kept";
  sidecar.opset = summary.opset;
  sidecar.onnx = std::filesystem::path(a.onnx).filename().string();
  const std::string sidecar_path = onnx_io::sidecar_path_for(a.onnx);
  onnx_io::write_sidecar(sidecar_path, sidecar);

  onnx_io::ParityResult parity;
  if (!a.no_verify) {
    parity = onnx_io::compare_with_runtime(*backbone, a.onnx, 0, /*seed=*/1, threads);
    if (parity.relative() > onnx_io::kParityTolerance) {
      throw Error(a.onnx + ": the arcforge runtime's embeddings differ from libtorch's by " +
                  std::to_string(parity.max_abs_diff) + " (output scale " + std::to_string(parity.output_scale) +
                  "); the export is wrong");
    }
  }

  if (a.json) {
    nlohmann::ordered_json out = {{"onnx", a.onnx},
                                  {"sidecar", sidecar_path},
                                  {"arch", backbone->arch()},
                                  {"embedding_size", backbone->embedding_size()},
                                  {"opset", summary.opset},
                                  {"batch", sidecar.batch},
                                  {"batch_norm", sidecar.batch_norm},
                                  {"folded_batch_norms", summary.folded_batch_norms},
                                  {"parameters", summary.parameters},
                                  {"bytes", summary.bytes},
                                  {"ops", summary.op_counts}};
    if (!a.no_verify) {
      out["parity"] = parity_json(parity);
    }
    std::cout << out.dump() << std::endl;
    return;
  }
  std::string ops;
  for (const auto& [op, count] : summary.op_counts) ops += (ops.empty() ? "" : ", ") + op + " " + std::to_string(count);
  std::printf("wrote %s (%s, %lld-d, opset %d, batch %s, %.1f MB; %s)\n", a.onnx.c_str(), backbone->arch().c_str(),
              static_cast<long long>(backbone->embedding_size()), summary.opset, sidecar.batch.c_str(),
              static_cast<double>(summary.bytes) / 1e6, ops.c_str());
  if (a.fold_bn) std::printf("folded %d batch norms into their neighbours\n", summary.folded_batch_norms);
  std::printf("wrote %s\n", sidecar_path.c_str());
  if (!a.no_verify) {
    std::printf("runtime vs libtorch at batch %lld: max abs diff %.3g (%.3g of the output scale %.3g)\n",
                static_cast<long long>(parity.batch), parity.max_abs_diff, parity.relative(), parity.output_scale);
  }
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand("export", "Write a backbone as ONNX (plus a JSON sidecar) for deployment");
  cmd->add_option("checkpoint", args->checkpoint, "Checkpoint to export (or use --arch NAME --random-init)");
  cmd->add_option("--onnx", args->onnx, "Output .onnx path (the sidecar goes next to it as .json)")->required();
  cmd->add_flag("--fold-bn", args->fold_bn, "Fold batch norms into the neighbouring Conv/Gemm");
  cmd->add_option("--opset", args->opset, "ONNX opset (default: 13, or 17 for ViT, whose LayerNormalization needs it)");
  cmd->add_option("--batch", args->batch, "'dynamic' (default) or a fixed batch size");
  cmd->add_option("--arch", args->arch, "Backbone for --random-init");
  cmd->add_flag("--random-init", args->random_init,
                "Export an untrained, seeded backbone (batch norm statistics from one seeded random batch)");
  cmd->add_option("--seed", args->seed, "Seed for --random-init (default 0)");
  cmd->add_option("--embedding-size", args->embedding_size, "Embedding size for --random-init (default 512)");
  cmd->add_flag("--no-verify", args->no_verify, "Skip running the export through the runtime against libtorch");
  cmd->add_option("--threads", args->threads, "CPU threads (default all)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
