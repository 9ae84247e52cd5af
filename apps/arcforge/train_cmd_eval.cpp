// `arcforge eval`: the verification protocol on a checkpoint: InsightFace .bin sets, pair lists
// (LFW pairs.txt, CSV) or, with neither, held-out synth pairs.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <memory>

#include "arcforge/common/parallel.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/eval/report_json.hpp"
#include "commands.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/embed.hpp"
#include "train/train/eval_sets.hpp"
#include "train/data/synth.hpp"
#include "train/train/trainer.hpp"
#ifdef ARCFORGE_WITH_DEPLOY
#include "face_cli.hpp"
#endif

namespace arcforge::cli {
namespace {

struct EvalArgs {
  std::string checkpoint;
  int64_t pairs = 0, identities = 0;
  int64_t seed = -1;
  std::string precision = "fp32", device = "auto";
  int threads = 0;
  bool json = false;
  std::vector<std::string> bins, pair_lists;
  std::string root;
  std::string pairs_text;  // --pairs: a count of held-out synth pairs, or a pair list's path
#ifdef ARCFORGE_WITH_DEPLOY
  FaceEvalArgs faces;      // --detector/--recognizer/--pack: the photo pipeline on the runtime
#endif
};

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

void print_report(const std::string& name, const eval::VerificationReport& r) {
  // InsightFace's line: name, accuracy mean +- std, then the extras.
  std::printf("[%s] accuracy %.5f +- %.5f  threshold %.4f  VAL@FAR=1e-3 %.4f +- %.4f  AUC %.5f  EER %.4f  (%lld pairs)\n",
              name.c_str(), r.accuracy, r.accuracy_std, r.threshold, r.val_at_far, r.val_std, r.auc, r.eer,
              static_cast<long long>(r.pairs));
}

// Real sets: every --bin and --pair-list, each reported the InsightFace way.
void run_sets(const EvalArgs& a, nn::Backbone& backbone, torch::Device device) {
  nlohmann::json sets = nlohmann::json::array();
  std::vector<std::string> paths = a.bins;
  paths.insert(paths.end(), a.pair_lists.begin(), a.pair_lists.end());
  for (const auto& path : paths) {
    train::EvalSet set = train::load_eval_set(path, a.root);
    auto report = train::evaluate_set(backbone, set, device, a.precision);
    if (a.json) {
      auto j = eval::to_json(report);
      j["name"] = set.name;
      j["path"] = path;
      sets.push_back(j);
    } else {
      print_report(set.name, report);
    }
  }
  if (a.json) std::cout << nlohmann::json{{"sets", sets}}.dump() << std::endl;
}

void run(EvalArgs a) {
  if (all_digits(a.pairs_text)) a.pairs = std::stoll(a.pairs_text);
  else if (!a.pairs_text.empty()) a.pair_lists.push_back(a.pairs_text);
#ifdef ARCFORGE_WITH_DEPLOY
  if (wants_face_eval(a.faces)) {
    if (!a.checkpoint.empty() || !a.bins.empty()) {
      throw ConfigError("eval: --recognizer/--pack evaluate photos of a pair list; a checkpoint or --bin goes alone");
    }
    a.faces.pair_lists = a.pair_lists;
    a.faces.images = a.root;
    a.faces.json = a.json;
    a.faces.models.threads = a.threads;
    a.faces.models.precision = a.precision;
    return run_face_eval(a.faces);
  }
#endif
  if (a.checkpoint.empty()) throw ConfigError("eval: give a checkpoint (or --recognizer/--pack to evaluate photos)");
  at::set_num_threads(worker_count(a.threads));
  train::TrainConfig config;
  train::TrainModules modules = train::load_modules_from_checkpoint(a.checkpoint, &config);
  torch::Device device = train::resolve_device(a.device);
  modules.backbone->to(device);
  if (!a.bins.empty() || !a.pair_lists.empty()) return run_sets(a, *modules.backbone, device);
  train::EvalConfig eval_config = config.eval;
  if (a.pairs > 0) eval_config.pairs = a.pairs;
  if (eval_config.pairs == 0) eval_config.pairs = 1000;
  if (a.identities > 0) eval_config.identities = a.identities;
  if (a.seed >= 0) eval_config.seed = static_cast<uint64_t>(a.seed);
  const data::SynthFaces faces(data::SynthOptions{config.data.num_identities, config.data.seed, 112});
  auto report = train::evaluate_synth(*modules.backbone, faces, eval_config, device, a.precision);
  if (a.json) {
    std::cout << eval::to_json(report).dump() << std::endl;
    return;
  }
  std::printf("held-out synth pairs  %lld (synthetic faces, not real-face accuracy)\n",
              static_cast<long long>(report.pairs));
  std::printf("accuracy              %.4f +- %.4f\n", report.accuracy, report.accuracy_std);
  std::printf("threshold (cosine)    %.4f\n", report.threshold);
  std::printf("VAL @ FAR=1e-3        %.4f +- %.4f (FAR %.5f)\n", report.val_at_far, report.val_std, report.far);
  std::printf("AUC                   %.5f\nEER                   %.4f\n", report.auc, report.eer);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Verification accuracy of a checkpoint (10-fold protocol)");
  cmd->add_option("checkpoint", args->checkpoint, "Checkpoint file (not with --recognizer/--pack)");
  cmd->add_option("--bin", args->bins, "InsightFace .bin verification set (repeatable)");
  cmd->add_option("--pair-list", args->pair_lists, "LFW pairs.txt or CSV (file_x,file_y,same) pair list (repeatable)");
  cmd->add_option("--root,--images", args->root, "Image root for --pair-list (default: the list's folder)");
  cmd->add_option("--pairs", args->pairs_text,
                  "A pair list (as --pair-list), or a number of held-out synth pairs (when no set is given)");
  cmd->add_option("--identities", args->identities, "Held-out identities the pairs come from");
  cmd->add_option("--seed", args->seed, "Pair seed");
  cmd->add_option("--precision", args->precision, "fp32 | bf16 | fp16 (libtorch); fp32 | bf16 | int8 (runtime)");
  cmd->add_option("--device", args->device, "auto | cpu | cuda");
  cmd->add_option("--threads", args->threads, "CPU threads (default all)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
#ifdef ARCFORGE_WITH_DEPLOY
  add_face_eval_options(cmd, args->faces, false);
#endif
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
