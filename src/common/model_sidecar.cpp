#include "arcforge/common/model_sidecar.hpp"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"

namespace arcforge::onnx_io {

std::string sidecar_path_for(const std::string& onnx_path) {
  std::filesystem::path p(onnx_path);
  if (p.extension() == ".onnx") return p.replace_extension(".json").string();
  return onnx_path + ".json";
}

void write_sidecar(const std::string& path, const ModelSidecar& s) {
  nlohmann::ordered_json points = nlohmann::ordered_json::array();
  for (const auto& p : s.landmark_template) points.push_back({p[0], p[1]});
  const nlohmann::ordered_json j = {
      {"input_colour", s.input_colour},
      {"mean", s.mean},
      {"std", s.std},
      {"layout", s.layout},
      {"input_size", s.input_size},
      {"embedding_size", s.embedding_size},
      {"template", points},
      {"arch", s.arch},
      {"source", s.source},
      {"batch", s.batch},
      {"batch_norm", s.batch_norm},
      {"opset", s.opset},
      {"onnx", s.onnx},
  };
  write_file_atomically(path, j.dump(2) + "\n");
}

ModelSidecar read_sidecar(const std::string& path) {
  const std::string text = read_file(path);
  ModelSidecar s;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    s.input_colour = j.at("input_colour").get<std::string>();
    s.mean = j.at("mean").get<std::array<double, 3>>();
    s.std = j.at("std").get<std::array<double, 3>>();
    s.layout = j.value("layout", s.layout);
    s.input_size = j.at("input_size").get<std::array<int64_t, 2>>();
    s.embedding_size = j.at("embedding_size").get<int64_t>();
    s.landmark_template = j.at("template").get<std::array<std::array<double, 2>, 5>>();
    s.arch = j.value("arch", std::string());
    s.source = j.value("source", std::string());
    s.batch = j.value("batch", s.batch);
    s.batch_norm = j.value("batch_norm", s.batch_norm);
    s.opset = j.value("opset", s.opset);
    s.onnx = j.value("onnx", std::string());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(file_message(path, std::string("not a valid model sidecar: ") + e.what()));
  }
  if (s.input_colour != "RGB" && s.input_colour != "BGR") {
    throw InputError(file_message(path, "input_colour must be RGB or BGR, got '" + s.input_colour + "'"));
  }
  if (s.embedding_size <= 0 || s.input_size[0] <= 0 || s.input_size[1] <= 0) {
    throw InputError(file_message(path, "embedding_size and input_size must be positive"));
  }
  for (double v : s.std) {
    if (!(v > 0)) throw InputError(file_message(path, "std values must be positive"));
  }
  return s;
}

}  // namespace arcforge::onnx_io
