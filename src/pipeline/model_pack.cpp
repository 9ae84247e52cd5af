// Model packs: a folder of ONNX files; the detector and the recognizer are told apart by shapes.
#include <algorithm>
#include <filesystem>

#include "arcforge/common/error.hpp"
#include "arcforge/pipeline/face_analyzer.hpp"

namespace arcforge::pipeline {

ModelPack find_model_pack(const std::string& directory) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(directory)) throw InputError(directory + ": model pack folder not found");
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(directory)) {
    if (entry.is_regular_file() && entry.path().extension() == ".onnx") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> detectors, recognizers;
  for (const auto& file : files) {
    runtime::Model model = runtime::Model::load(file, {.threads = 1});
    if (looks_like_detector(model)) detectors.push_back(file);
    else if (looks_like_recognizer(model)) recognizers.push_back(file);
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& f : v) {
      s += ' ';  // appended piecewise: GCC 12 warns (-Wrestrict, a false positive) on " " + string
      s += fs::path(f).filename().string();
    }
    return s;
  };
  if (detectors.size() != 1 || recognizers.size() != 1) {
    throw InputError(directory + ": a model pack needs exactly one face detector and one recognizer ONNX; found " +
                     std::to_string(detectors.size()) + " detector(s)" + list(detectors) + " and " +
                     std::to_string(recognizers.size()) + " recognizer(s)" + list(recognizers) +
                     " (use --detector/--recognizer to choose)");
  }
  return {detectors.front(), recognizers.front()};
}

}  // namespace arcforge::pipeline
