// `arcforge embed IMG...`: L2-normalised embeddings of the largest face (or every face) per photo.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "arcforge/common/error.hpp"
#include "arcforge/common/parallel.hpp"
#include "arcforge/common/npy.hpp"
#include "commands.hpp"
#include "face_cli.hpp"

namespace arcforge::cli {
namespace {

struct EmbedArgs {
  FaceModelArgs models;
  std::vector<std::string> images;
  std::string npy;
  bool all_faces = false, aligned = false, json = false;
};

struct PhotoEmbeddings {
  std::vector<std::vector<float>> embeddings;
  std::vector<nlohmann::json> faces;
};

PhotoEmbeddings embed_photo(const pipeline::FaceAnalyzer& analyzer, const EmbedArgs& a, const std::string& file) {
  if (a.aligned) {  // the photo is already an aligned crop
    return {{analyzer.embed_aligned({analyzer.load_image(file)}).front()}, {{{"file", file}}}};
  }
  const pipeline::Photo photo = analyzer.load_photo(file);
  std::vector<pipeline::Face> faces = analyzer.detect(photo);
  if (faces.empty()) throw InputError(file + ": no face found");
  if (!a.all_faces) {  // the largest face, as verify picks it
    const auto largest = std::max_element(faces.begin(), faces.end(), [](const auto& x, const auto& y) {
      return x.detection.box.area() < y.detection.box.area();
    });
    faces = {*largest};
  }
  analyzer.complete(photo, faces);
  PhotoEmbeddings out;
  for (size_t k = 0; k < faces.size(); ++k) {
    nlohmann::json face = face_json(faces[k], false, false);
    face["file"] = file;
    face["face"] = k;
    out.embeddings.push_back(std::move(faces[k].embedding));
    out.faces.push_back(std::move(face));
  }
  return out;
}

void run(const EmbedArgs& a) {
  const PhotoWorkers p = photo_workers(a.models, a.images.size());
  const pipeline::FaceAnalyzer analyzer = make_analyzer(p.models, !a.aligned, true);
  std::vector<PhotoEmbeddings> photos(a.images.size());
  parallel_for_each(a.images.size(), p.workers, [&](size_t i) { photos[i] = embed_photo(analyzer, a, a.images[i]); });
  nlohmann::json rows = nlohmann::json::array(), faces_json = nlohmann::json::array();
  std::vector<float> matrix;
  int64_t count = 0, dim = 0;
  for (size_t i = 0; i < photos.size(); ++i) {
    for (size_t k = 0; k < photos[i].embeddings.size(); ++k) {
      const std::vector<float>& embedding = photos[i].embeddings[k];
      rows.push_back(embedding);
      faces_json.push_back(photos[i].faces[k]);
      matrix.insert(matrix.end(), embedding.begin(), embedding.end());
      dim = static_cast<int64_t>(embedding.size());
      ++count;
      if (!a.json && a.npy.empty()) std::printf("%s: %zu-d embedding, |e| = 1\n", a.images[i].c_str(), embedding.size());
    }
  }
  if (!a.npy.empty()) write_npy(a.npy, {count, dim}, matrix.data());
  if (a.json) {
    nlohmann::json out{{"embeddings", rows}, {"faces", faces_json}};
    if (!a.npy.empty()) out["npy"] = a.npy;
    std::cout << out.dump() << std::endl;
  }
}

}  // namespace

void add_embed_command(CLI::App& app) {
  auto args = std::make_shared<EmbedArgs>();
  CLI::App* cmd = app.add_subcommand("embed", "Face embeddings (L2-normalised) of photos");
  cmd->add_option("images", args->images, "Photos")->required();
  add_face_model_options(cmd, args->models, true);
  cmd->add_flag("--all-faces", args->all_faces, "Every face of each photo (default: the largest)");
  cmd->add_flag("--aligned", args->aligned, "The inputs are aligned crops already: no detection");
  cmd->add_option("--npy", args->npy, "Write the embeddings as a float32 [count, dim] .npy");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
