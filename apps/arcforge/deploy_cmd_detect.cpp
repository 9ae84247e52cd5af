// `arcforge detect IMG...`: faces, landmarks and scores; optionally annotated PNGs.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "arcforge/common/error.hpp"
#include "arcforge/common/parallel.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/pipeline/draw.hpp"
#include "commands.hpp"
#include "face_cli.hpp"

namespace arcforge::cli {
namespace {

struct DetectArgs {
  FaceModelArgs models;
  std::vector<std::string> images;
  std::string draw;
  bool quality = false, json = false;
};

// The folder, if one, is created before the photos run.
std::string draw_path(const DetectArgs& a, const std::string& image) {
  if (a.images.size() == 1 && std::filesystem::path(a.draw).extension() == ".png") return a.draw;
  return (std::filesystem::path(a.draw) / (std::filesystem::path(image).stem().string() + ".png")).string();
}

void print_faces(const std::string& file, const std::vector<pipeline::Face>& faces) {
  std::printf("%s: %zu face(s)\n", file.c_str(), faces.size());
  for (const auto& f : faces) {
    const auto& d = f.detection;
    std::printf("  box [%.1f %.1f %.1f %.1f]  score %.3f", d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.score);
    if (d.has_landmarks) {
      std::printf("  landmarks");
      for (const auto& p : d.landmarks) std::printf(" (%.1f,%.1f)", p.x, p.y);
    }
    std::printf("\n");
  }
}

void run(const DetectArgs& a) {
  const PhotoWorkers p = photo_workers(a.models, a.images.size());
  const pipeline::FaceAnalyzer analyzer = make_analyzer(p.models, true, false);
  if (!a.draw.empty() && !(a.images.size() == 1 && std::filesystem::path(a.draw).extension() == ".png")) {
    std::filesystem::create_directories(a.draw);
  }
  std::vector<std::vector<pipeline::Face>> faces(a.images.size());
  std::vector<nlohmann::json> images(a.images.size());
  parallel_for_each(a.images.size(), p.workers, [&](size_t i) {
    const std::string& file = a.images[i];
    // Drawing needs the photo whole.
    const pipeline::Photo photo = analyzer.load_photo(file, /*allow_reduced=*/a.draw.empty());
    faces[i] = analyzer.detect(photo);
    if (a.quality) analyzer.complete(photo, faces[i]);
    nlohmann::json list = nlohmann::json::array();
    for (const auto& f : faces[i]) list.push_back(face_json(f, a.quality, false));
    images[i] = {{"file", file}, {"width", photo.full_width}, {"height", photo.full_height}, {"faces", list}};
    if (!a.draw.empty()) {
      std::vector<pipeline::Detection> detections;
      for (const auto& f : faces[i]) detections.push_back(f.detection);
      const std::string out = draw_path(a, file);
      image::write_png(out, pipeline::draw_detections(photo.pixels, detections));
      images[i]["drawn"] = out;
    }
  });
  if (!a.json) {
    for (size_t i = 0; i < a.images.size(); ++i) print_faces(a.images[i], faces[i]);
    return;
  }
  // One image: {"file", "faces": [...]}; several: {"images": [{"file", "faces"}, ...]}.
  std::cout << (images.size() == 1 ? images.front() : nlohmann::json{{"images", images}}).dump() << std::endl;
}

}  // namespace

void add_detect_command(CLI::App& app) {
  auto args = std::make_shared<DetectArgs>();
  CLI::App* cmd = app.add_subcommand("detect", "Detect faces and 5 landmarks in photos");
  cmd->add_option("images", args->images, "Photos (JPEG, PNG, WebP)")->required();
  add_face_model_options(cmd, args->models, false);
  cmd->add_option("--draw", args->draw, "Write annotated PNGs: a .png path for one photo, else a folder");
  cmd->add_flag("--quality", args->quality, "Add quality signals (pose, blur of the aligned crop, gate)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
