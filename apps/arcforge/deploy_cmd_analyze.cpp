// `arcforge analyze IMG...`: every face with box, landmarks, quality signals and embedding.
#include <cstdio>
#include <iostream>

#include "arcforge/common/error.hpp"
#include "commands.hpp"
#include "face_cli.hpp"

namespace arcforge::cli {
namespace {

struct AnalyzeArgs {
  FaceModelArgs models;
  std::vector<std::string> images;
  bool embeddings = true, json = false;
};

void run(const AnalyzeArgs& a) {
  const pipeline::FaceAnalyzer analyzer = make_analyzer(a.models, true, true);
  nlohmann::json images = nlohmann::json::array();
  for (const auto& file : a.images) {
    const pipeline::Photo photo = analyzer.load_photo(file);
    const std::vector<pipeline::Face> faces = analyzer.analyze(photo);
    nlohmann::json list = nlohmann::json::array();
    for (const auto& f : faces) list.push_back(face_json(f, true, a.embeddings));
    images.push_back({{"file", file}, {"width", photo.full_width}, {"height", photo.full_height}, {"faces", list}});
    if (a.json) continue;
    std::printf("%s: %zu face(s)\n", file.c_str(), faces.size());
    for (const auto& f : faces) {
      const auto& d = f.detection;
      const auto& q = f.quality;
      std::printf("  box [%.0f %.0f %.0f %.0f] score %.3f size %.0f yaw %.1f pitch %.1f roll %.1f blur %.1f %s\n",
                  d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.score, q.face_size, q.pose.yaw, q.pose.pitch,
                  q.pose.roll, q.blur, f.rejection.empty() ? "ok" : ("rejected: " + f.rejection).c_str());
    }
  }
  if (a.json) std::cout << (images.size() == 1 ? images.front() : nlohmann::json{{"images", images}}).dump() << std::endl;
}

}  // namespace

void add_analyze_command(CLI::App& app) {
  auto args = std::make_shared<AnalyzeArgs>();
  CLI::App* cmd = app.add_subcommand("analyze", "Detect, align, embed and grade every face of photos");
  cmd->add_option("images", args->images, "Photos")->required();
  add_face_model_options(cmd, args->models, true);
  cmd->add_flag("!--no-embeddings", args->embeddings, "Leave the embeddings out of the JSON");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
