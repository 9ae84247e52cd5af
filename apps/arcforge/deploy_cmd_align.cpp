// `arcforge align IMG... --out DIR`: the aligned crops (ArcFace template) of every face, as PNGs.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "arcforge/common/error.hpp"
#include "arcforge/common/parallel.hpp"
#include "arcforge/image/codec.hpp"
#include "commands.hpp"
#include "face_cli.hpp"

namespace arcforge::cli {
namespace {

struct AlignArgs {
  FaceModelArgs models;
  std::vector<std::string> images;
  std::string out;
  int size = 112;
  bool json = false;
};

void run(const AlignArgs& a) {
  const PhotoWorkers p = photo_workers(a.models, a.images.size());
  const pipeline::FaceAnalyzer analyzer = make_analyzer(p.models, true, false);
  std::filesystem::create_directories(a.out);
  std::vector<std::vector<nlohmann::json>> crops(a.images.size());  // per photo, in face order
  parallel_for_each(a.images.size(), p.workers, [&](size_t i) {
    const std::string& file = a.images[i];
    const pipeline::Photo photo = analyzer.load_photo(file);
    const auto faces = analyzer.detect(photo);
    for (size_t k = 0; k < faces.size(); ++k) {
      const image::Image crop = analyzer.align(photo, faces[k].detection, a.size, a.size);
      const std::string path =
          (std::filesystem::path(a.out) / (std::filesystem::path(file).stem().string() + "_" + std::to_string(k) + ".png"))
              .string();
      image::write_png(path, crop);
      crops[i].push_back({{"file", file}, {"face", k}, {"path", path}, {"score", faces[k].detection.score}});
    }
  });
  nlohmann::json all = nlohmann::json::array();
  for (size_t i = 0; i < a.images.size(); ++i) {
    if (crops[i].empty()) std::fprintf(stderr, "arcforge align: %s: no face found\n", a.images[i].c_str());
    for (const auto& crop : crops[i]) {
      if (!a.json) std::printf("%s\n", crop["path"].get<std::string>().c_str());
      all.push_back(crop);
    }
  }
  if (a.json) std::cout << nlohmann::json{{"crops", all}}.dump() << std::endl;
}

}  // namespace

void add_align_command(CLI::App& app) {
  auto args = std::make_shared<AlignArgs>();
  CLI::App* cmd = app.add_subcommand("align", "Write the aligned face crops of photos (5-point ArcFace template)");
  cmd->add_option("images", args->images, "Photos")->required();
  cmd->add_option("--out", args->out, "Output folder (<photo stem>_<face>.png)")->required();
  cmd->add_option("--size", args->size, "Crop size: 112 (default), multiples of 112, or e.g. 128 (+8 px variant)")
      ->check(CLI::Range(32, 1024));
  add_face_model_options(cmd, args->models, false);
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
