// Recognizer preprocessing specs: parsing, printing, and reading them from a model's sidecar.
#include <filesystem>
#include <sstream>

#include "arcforge/common/error.hpp"
#include "arcforge/common/model_sidecar.hpp"
#include "arcforge/pipeline/recognizer.hpp"

namespace arcforge::pipeline {
namespace {

std::array<float, 3> parse_triple(const std::string& value, const std::string& text) {
  std::array<float, 3> out{};
  std::vector<float> parts;
  std::stringstream s(value);
  std::string part;
  while (std::getline(s, part, '/')) {
    try {
      size_t used = 0;
      parts.push_back(std::stof(part, &used));
      if (used != part.size()) throw std::invalid_argument(part);
    } catch (const std::exception&) {
      throw ConfigError("recognizer spec '" + text + "': '" + part + "' is not a number");
    }
  }
  if (parts.size() == 1) parts = {parts[0], parts[0], parts[0]};
  if (parts.size() != 3) throw ConfigError("recognizer spec '" + text + "': expected one value or three a/b/c");
  std::copy(parts.begin(), parts.end(), out.begin());
  return out;
}

}  // namespace

PreprocessSpec parse_preprocess_spec(const std::string& text) {
  PreprocessSpec spec;
  spec.source = "spec";
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (item == "bgr") {
      spec.bgr = true;
    } else if (item == "rgb") {
      spec.bgr = false;
    } else if (item == "imagenet") {
      spec.bgr = false;
      spec.mean = {123.675f, 116.28f, 103.53f};
      spec.std = {58.395f, 57.12f, 57.375f};
    } else if (item == "insightface") {
      spec.bgr = false;
      spec.mean = {127.5f, 127.5f, 127.5f};
      spec.std = {127.5f, 127.5f, 127.5f};
    } else if (key == "mean" && !value.empty()) {
      spec.mean = parse_triple(value, text);
    } else if (key == "std" && !value.empty()) {
      spec.std = parse_triple(value, text);
      for (float v : spec.std) {
        if (!(v > 0)) throw ConfigError("recognizer spec '" + text + "': std must be positive");
      }
    } else if (key == "size" && !value.empty()) {
      int w = 0, h = 0;
      char x = 0;
      std::stringstream v(value);
      if (!(v >> w >> x >> h) || x != 'x' || w < 16 || h < 16 || w > 1024 || h > 1024) {
        throw ConfigError("recognizer spec '" + text + "': size must be WxH, e.g. 112x112");
      }
      spec.width = w;
      spec.height = h;
    } else {
      throw ConfigError("recognizer spec '" + text + "': unknown item '" + item +
                        "' (expected bgr, rgb, imagenet, insightface, mean=, std=, size=)");
    }
  }
  return spec;
}

std::string describe(const PreprocessSpec& spec) {
  std::ostringstream s;
  s << (spec.bgr ? "bgr" : "rgb") << ",mean=" << spec.mean[0] << "/" << spec.mean[1] << "/" << spec.mean[2]
    << ",std=" << spec.std[0] << "/" << spec.std[1] << "/" << spec.std[2] << ",size=" << spec.width << "x"
    << spec.height;
  return s.str();
}

std::optional<PreprocessSpec> sidecar_spec(const std::string& model_path) {
  const std::string path = onnx_io::sidecar_path_for(model_path);
  if (!std::filesystem::is_regular_file(path)) return std::nullopt;
  const onnx_io::ModelSidecar sidecar = onnx_io::read_sidecar(path);
  PreprocessSpec spec;
  if (sidecar.input_colour != "RGB" && sidecar.input_colour != "BGR") {
    throw InputError(path + ": input_colour must be RGB or BGR, not '" + sidecar.input_colour + "'");
  }
  spec.bgr = sidecar.input_colour == "BGR";
  for (int c = 0; c < 3; ++c) {
    spec.mean[c] = static_cast<float>(sidecar.mean[c]);
    spec.std[c] = static_cast<float>(sidecar.std[c]);
  }
  spec.height = static_cast<int>(sidecar.input_size[0]);
  spec.width = static_cast<int>(sidecar.input_size[1]);
  spec.source = "sidecar " + path;
  return spec;
}

}  // namespace arcforge::pipeline
