// `arcforge import`: the weights of an ONNX face recognizer (InsightFace's released models, our
// exports) loaded into a trainable backbone and written as an arcforge checkpoint.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "arcforge/common/parallel.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"
#include "commands.hpp"
#include "parity_json.hpp"
#include "train/export/onnx_import.hpp"
#include "train/export/runtime_parity.hpp"
#include "train/train/checkpoint.hpp"

namespace arcforge::cli {
namespace {

struct ImportArgs {
  std::string onnx;
  std::string arch;
  int64_t embedding_size = 0;
  std::string config;
  std::string out;
  bool no_verify = false;
  int threads = 0;
  bool json = false;
};

void run(const ImportArgs& a) {
  const int threads = worker_count(a.threads);
  at::set_num_threads(threads);
  const onnx_io::OnnxRecognizer recognizer = onnx_io::OnnxRecognizer::read(a.onnx);

  // The checkpoint carries a training config: a preset when given (to fine-tune with), else the
  // defaults, with the architecture and embedding size of the imported model.
  train::TrainConfig config;
  if (!a.config.empty()) config = train::load_config(a.config, {});
  if (!a.arch.empty()) {
    config.model.arch = a.arch;
  } else if (a.config.empty()) {
    throw ConfigError("import: give --arch NAME (or a --config preset that names model.arch)");
  }
  config.model.embedding_size = a.embedding_size > 0 ? a.embedding_size : recognizer.embedding_size();
  train::TrainModules modules = train::make_modules(config);
  const onnx_io::ImportSummary summary = recognizer.load_into(*modules.backbone);

  onnx_io::ParityResult parity;
  if (a.no_verify && modules.backbone->arch().rfind("vit", 0) == 0) {
    // The check below is all that covers a ViT's attention: its head count and scale carry no weights.
    log::warn(a.onnx + ": --no-verify: the attention's head count and scale, which carry no weights, are not checked "
              "against " + config.model.arch + "'s; without the flag the file's outputs check them");
  }
  if (!a.no_verify) {
    parity = onnx_io::compare_with_runtime(*modules.backbone, a.onnx, 0, /*seed=*/1, threads);
    if (parity.relative() > onnx_io::kParityTolerance) {
      throw Error(a.onnx + ": the imported " + config.model.arch + " gives embeddings that differ from the file's by " +
                  std::to_string(parity.max_abs_diff) + " (output scale " + std::to_string(parity.output_scale) +
                  ", arcforge runtime vs libtorch); not writing " + a.out);
    }
  }
  train::save_checkpoint(a.out, config, modules, nullptr, train::TrainCounters{});

  if (a.json) {
    nlohmann::ordered_json out = {{"onnx", a.onnx},
                                  {"checkpoint", a.out},
                                  {"arch", modules.backbone->arch()},
                                  {"embedding_size", modules.backbone->embedding_size()},
                                  {"producer", summary.producer},
                                  {"layers", summary.layers},
                                  {"batch_norms_restored", summary.batch_norms_restored},
                                  {"batch_norms_eps_adjusted", summary.batch_norms_eps_adjusted}};
    if (!a.no_verify) {
      out["parity"] = parity_json(parity);
    }
    std::cout << out.dump() << std::endl;
    return;
  }
  std::printf("read %s (%s): %d layers into %s, %lld-d\n", a.onnx.c_str(), summary.producer.c_str(), summary.layers,
              modules.backbone->arch().c_str(), static_cast<long long>(modules.backbone->embedding_size()));
  if (summary.batch_norms_restored > 0) {
    std::printf("restored %d batch norms the exporter had folded (as identities)\n", summary.batch_norms_restored);
  }
  if (summary.batch_norms_eps_adjusted > 0) {
    std::printf("%d batch norms had another epsilon; their running variance absorbs the difference\n",
                summary.batch_norms_eps_adjusted);
  }
  if (!a.no_verify) {
    std::printf("libtorch vs the file (arcforge runtime) at batch %lld: max abs diff %.3g (%.3g of the output scale %.3g)\n",
                static_cast<long long>(parity.batch), parity.max_abs_diff, parity.relative(), parity.output_scale);
  }
  std::printf("wrote %s (the classification head is freshly initialised)\n", a.out.c_str());
}

}  // namespace

void add_import_command(CLI::App& app) {
  auto args = std::make_shared<ImportArgs>();
  CLI::App* cmd = app.add_subcommand("import", "Load an ONNX face recognizer's weights into a trainable checkpoint");
  cmd->add_option("onnx", args->onnx, "ONNX model (e.g. InsightFace's w600k_r50.onnx)")->required();
  cmd->add_option("--arch", args->arch, "Backbone it was built as (r18 r34 r50 r100 r200 mbf mbf_large vit_t vit_s vit_b ...)");
  cmd->add_option("--embedding-size", args->embedding_size, "Embedding size (default: read from the file)");
  cmd->add_option("--config", args->config, "Training preset (TOML) stored in the checkpoint for fine-tuning");
  cmd->add_option("--out", args->out, "Checkpoint to write")->required();
  cmd->add_flag("--no-verify", args->no_verify, "Skip comparing the imported backbone with the file's outputs");
  cmd->add_option("--threads", args->threads, "CPU threads (default all)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
