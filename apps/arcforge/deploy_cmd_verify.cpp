// `arcforge verify A B`: are the (largest) faces of two photos the same person?
#include <cstdio>
#include <iostream>

#include "arcforge/common/error.hpp"
#include "commands.hpp"
#include "face_cli.hpp"

namespace arcforge::cli {
namespace {

struct VerifyArgs {
  FaceModelArgs models;
  std::string first, second;
  float threshold = kDefaultVerifyThreshold;
  bool json = false;
};

void run(const VerifyArgs& a) {
  const pipeline::FaceAnalyzer analyzer = make_analyzer(a.models, true, true);
  const pipeline::VerifyResult r = analyzer.verify(analyzer.load_photo(a.first), analyzer.load_photo(a.second), a.threshold);
  if (a.json) {
    nlohmann::json first = face_json(r.first, true, false), second = face_json(r.second, true, false);
    first["file"] = a.first;
    second["file"] = a.second;
    std::cout << nlohmann::json{{"similarity", r.similarity}, {"same", r.same}, {"threshold", r.threshold},
                                {"faces", {first, second}}}
                     .dump()
              << std::endl;
    return;
  }
  std::printf("similarity %.4f  %s  (threshold %.3f)\n", r.similarity, r.same ? "same person" : "different people",
              r.threshold);
}

}  // namespace

void add_verify_command(CLI::App& app) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* cmd = app.add_subcommand("verify", "Cosine similarity of the largest faces of two photos, and a decision");
  cmd->add_option("first", args->first, "Photo A")->required();
  cmd->add_option("second", args->second, "Photo B")->required();
  add_face_model_options(cmd, args->models, true);
  cmd->add_option("--threshold", args->threshold,
                  "Cosine threshold for 'same' (calibrate yours with `arcforge eval --pair-list ... --detector ...`)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
