// `arcforge eval --pair-list pairs.txt --images DIR --detector D --recognizer R`: the 10-fold
// verification protocol on photos through the whole face pipeline.
#include <cstdio>
#include <iostream>
#include <thread>

#include "arcforge/common/error.hpp"
#include "arcforge/common/parallel.hpp"
#include "arcforge/eval/report_json.hpp"
#include "arcforge/pipeline/pair_evaluation.hpp"
#include "commands.hpp"
#include "face_cli.hpp"

namespace arcforge::cli {

void add_face_eval_options(CLI::App* cmd, FaceEvalArgs& a, bool standalone) {
  add_face_model_options(cmd, a.models, true, standalone);
  if (standalone) cmd->add_option("--images", a.images, "Image root of the pair lists (default: each list's folder)");
  cmd->add_option("--face", a.face, "Face of a multi-face photo: center (nearest the centre) | largest");
}

bool wants_face_eval(const FaceEvalArgs& a) { return !a.models.recognizer.empty() || !a.models.pack.empty(); }

void run_face_eval(const FaceEvalArgs& a) {
  if (a.pair_lists.empty()) throw ConfigError("give a pair list: --pair-list pairs.txt|pairs.csv");
  // Photos run in parallel, one runtime thread each: no per-operator barrier between cores.
  FaceModelArgs models = a.models;
  const int cores = worker_count(a.models.threads);
  models.threads = 1;
  const pipeline::FaceAnalyzer analyzer = make_analyzer(models, true, true);
  pipeline::PairEvalOptions options;
  options.choice = pipeline::parse_face_choice(a.face);
  options.workers = cores;
  nlohmann::json sets = nlohmann::json::array();
  for (const auto& list_path : a.pair_lists) {
    const data::PairList list = data::read_pair_list(list_path, a.images);
    const auto missing = data::missing_files(list);
    if (!missing.empty()) {
      throw InputError(list_path + ": " + std::to_string(missing.size()) + " image(s) missing, e.g. " + missing.front());
    }
    const pipeline::PairEvalResult r = pipeline::evaluate_pair_list(analyzer, list, options);
    nlohmann::json j = eval::to_json(r.report);
    j["path"] = list_path;
    j["images"] = r.images;
    j["no_face"] = r.no_face.size();
    j["no_face_files"] = r.no_face;
    j["seconds"] = r.seconds;
    j["images_per_s"] = r.images / r.seconds;
    j["threads"] = cores;
    j["flip"] = a.models.flip;
    j["recognizer_spec"] = pipeline::describe(analyzer.recognizer()->spec());
    sets.push_back(j);
    if (!a.json) {
      std::printf("[%s] accuracy %.5f +- %.5f  threshold %.4f  VAL@FAR=1e-3 %.4f  AUC %.5f  EER %.4f  (%lld pairs, "
                  "%lld images, %zu without a face, %.1f s)\n",
                  list_path.c_str(), r.report.accuracy, r.report.accuracy_std, r.report.threshold, r.report.val_at_far,
                  r.report.auc, r.report.eer, static_cast<long long>(r.report.pairs), static_cast<long long>(r.images),
                  r.no_face.size(), r.seconds);
    }
  }
  if (!a.json) return;
  // One list: its report at the top level (as `eval --json` prints); several: {"sets": [...]}.
  std::cout << (sets.size() == 1 ? sets.front() : nlohmann::json{{"sets", sets}}).dump() << std::endl;
}

void add_face_eval_command(CLI::App& app) {
  auto args = std::make_shared<FaceEvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Verification accuracy on a pair list of photos (10-fold protocol)");
  cmd->add_option("--pair-list,--pairs", args->pair_lists, "LFW pairs.txt or CSV pair list (repeatable)")->required();
  add_face_eval_options(cmd, *args, true);
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run_face_eval(*args); });
}

}  // namespace arcforge::cli
