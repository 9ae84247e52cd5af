// `arcforge analyze IMG...`: every face with box, landmarks, quality signals and embedding.
#include <cstdio>
#include <iostream>

#include "arcforge/common/error.hpp"
#include "arcforge/common/parallel.hpp"
#include "commands.hpp"
#include "face_cli.hpp"

namespace arcforge::cli {
namespace {

struct AnalyzeArgs {
  FaceModelArgs models;
  std::vector<std::string> images;
  bool embeddings = true, json = false;
};

void print_faces(const std::string& file, const std::vector<pipeline::Face>& faces) {
  std::printf("%s: %zu face(s)\n", file.c_str(), faces.size());
  for (const auto& f : faces) {
    const auto& d = f.detection;
    const auto& q = f.quality;
    std::printf("  box [%.0f %.0f %.0f %.0f] score %.3f size %.0f yaw %.1f pitch %.1f roll %.1f blur %.1f %s\n",
                d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.score, q.face_size, q.pose.yaw, q.pose.pitch, q.pose.roll,
                q.blur, f.rejection.empty() ? "ok" : ("rejected: " + f.rejection).c_str());
  }
}

void run(const AnalyzeArgs& a) {
  const PhotoWorkers p = photo_workers(a.models, a.images.size());
  const pipeline::FaceAnalyzer analyzer = make_analyzer(p.models, true, true);
  std::vector<std::vector<pipeline::Face>> faces(a.images.size());
  std::vector<nlohmann::json> images(a.images.size());
  parallel_for_each(a.images.size(), p.workers, [&](size_t i) {
    const pipeline::Photo photo = analyzer.load_photo(a.images[i]);
    faces[i] = analyzer.analyze(photo);
    nlohmann::json list = nlohmann::json::array();
    for (const auto& f : faces[i]) list.push_back(face_json(f, true, a.embeddings));
    images[i] = {{"file", a.images[i]}, {"width", photo.full_width}, {"height", photo.full_height}, {"faces", list}};
  });
  if (!a.json) {
    for (size_t i = 0; i < a.images.size(); ++i) print_faces(a.images[i], faces[i]);
    return;
  }
  std::cout << (images.size() == 1 ? images.front() : nlohmann::json{{"images", images}}).dump() << std::endl;
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
