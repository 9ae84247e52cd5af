// `arcforge quantize MODEL.onnx --calib SRC --out MODEL.int8.onnx`: post-training int8
// quantization. Calibrates on aligned faces (a folder, a .rec or an InsightFace .bin) and writes a
// QDQ ONNX file that ONNX Runtime and `--precision int8` run.
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"
#include "arcforge/runtime/face_input.hpp"
#include "arcforge/runtime/quantize.hpp"
#include "commands.hpp"

namespace arcforge::cli {
namespace {

struct QuantizeArgs {
  std::string model, calib, out;
  std::string method = "mse";
  double percentile = 99.99;
  std::vector<std::string> keep_fp32;
  std::vector<std::string> ops{"Conv"};
  int64_t samples = 256;
  int64_t batch = 16;
  std::string mean, std;
  bool bgr = false;
  bool no_bias_correction = false;
  int threads = 0;
  bool json = false;
};

std::vector<std::string> split_commas(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::stringstream ss(item);
    std::string part;
    while (std::getline(ss, part, ',')) {
      if (!part.empty()) out.push_back(part);
    }
  }
  return out;
}

std::array<float, 3> three_floats(const std::string& text, const std::string& flag) {
  std::vector<float> v;
  for (const auto& part : split_commas({text})) {
    try {
      std::size_t used = 0;
      v.push_back(std::stof(part, &used));
      if (used != part.size()) throw std::invalid_argument(part);
    } catch (const std::exception&) {
      throw InputError(flag + ": expected one or three numbers, got '" + text + "'");
    }
  }
  if (v.size() == 1) return {v[0], v[0], v[0]};
  if (v.size() != 3) throw InputError(flag + ": expected one or three numbers, got '" + text + "'");
  return {v[0], v[1], v[2]};
}

// The model's pre-processing: its JSON sidecar (model.json next to model.onnx, see docs/export.md)
// unless --mean/--std/--bgr say otherwise.
runtime::Preprocess preprocessing(const QuantizeArgs& a) {
  runtime::Preprocess p;
  const std::string sidecar = std::filesystem::path(a.model).replace_extension(".json").string();
  bool from_sidecar = false;
  if (std::filesystem::exists(sidecar)) {
    std::ifstream in(sidecar);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
      if (j.contains("input_colour")) p.bgr = j.at("input_colour").get<std::string>() == "BGR";
      if (j.contains("mean")) p.mean = j.at("mean").get<std::array<float, 3>>();
      if (j.contains("std")) p.std = j.at("std").get<std::array<float, 3>>();
    } catch (const std::exception& e) {
      throw InputError(file_message(sidecar, std::string("bad sidecar: ") + e.what()));
    }
    from_sidecar = true;
  }
  if (!a.mean.empty()) p.mean = three_floats(a.mean, "--mean");
  if (!a.std.empty()) p.std = three_floats(a.std, "--std");
  if (a.bgr) p.bgr = true;
  if (!from_sidecar && a.mean.empty() && a.std.empty()) {
    log::warn("quantize: no sidecar " + sidecar + " and no --mean/--std: using (x - 127.5) / 127.5, " +
              (p.bgr ? "BGR" : "RGB"));
  }
  for (float s : p.std) {
    if (!(s > 0)) throw InputError("--std must be positive");
  }
  return p;
}

void run(const QuantizeArgs& a) {
  if (a.samples < 1) throw InputError("--samples must be >= 1");
  if (a.batch < 1 || a.batch > 1024) throw InputError("--batch must be in 1..1024");
  runtime::QuantizeOptions options;
  options.method = runtime::parse_calibration_method(a.method);
  options.percentile = a.percentile;
  options.keep_fp32 = split_commas(a.keep_fp32);
  options.op_types = split_commas(a.ops);
  options.bias_correction = !a.no_bias_correction;
  options.threads = a.threads;
  const runtime::Preprocess pre = preprocessing(a);

  // The input size: the model's declared H x W, or 112 x 112 (aligned faces) when dynamic.
  const auto probe = runtime::Model::load(a.model, {.threads = a.threads});
  if (probe.inputs().size() != 1 || probe.inputs()[0].shape.size() != 4) {
    throw InputError(file_message(a.model, "quantize needs a model with one NCHW image input"));
  }
  const auto& shape = probe.inputs()[0].shape;
  const int height = shape[2] > 0 ? static_cast<int>(shape[2]) : 112;
  const int width = shape[3] > 0 ? static_cast<int>(shape[3]) : 112;
  const int64_t batch = shape[0] > 0 ? shape[0] : a.batch;

  runtime::FaceSource faces = runtime::load_faces(a.calib, height, width, a.samples);
  std::vector<runtime::Tensor> batches;
  for (std::size_t k = 0; k < faces.faces.size(); k += static_cast<std::size_t>(batch)) {
    const std::size_t end = std::min(faces.faces.size(), k + static_cast<std::size_t>(batch));
    if (shape[0] > 0 && static_cast<int64_t>(end - k) != batch) break;  // a fixed batch: drop the rest
    std::vector<image::Image> part(faces.faces.begin() + static_cast<std::ptrdiff_t>(k),
                                   faces.faces.begin() + static_cast<std::ptrdiff_t>(end));
    batches.push_back(runtime::faces_to_tensor(part, pre));
  }
  const auto report = runtime::quantize_model(a.model, batches, a.out, options);

  nlohmann::json acts = nlohmann::json::array();
  for (const auto& r : report.activations) {
    acts.push_back({{"value", r.value},
                    {"min", r.min},
                    {"max", r.max},
                    {"threshold", r.threshold},
                    {"scale", r.scale},
                    {"type", r.is_signed ? "int8" : "uint8"}});
  }
  nlohmann::json out = {{"model", a.model},
                        {"out", a.out},
                        {"method", runtime::to_string(options.method)},
                        {"samples", report.samples},
                        {"skipped_images", faces.skipped},
                        {"quantized_convs", report.quantized_convs.size()},
                        {"kept_fp32", report.kept_fp32},
                        {"bias_corrected", report.bias_corrected.size()},
                        {"opset", {report.opset_from, report.opset_to}},
                        {"activations", acts}};
  if (options.method == runtime::CalibrationMethod::percentile) out["percentile"] = options.percentile;
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("%s: %zu convolutions in int8, %zu kept in fp32, calibrated on %lld faces (%s)\n", a.out.c_str(),
                report.quantized_convs.size(), report.kept_fp32.size(), static_cast<long long>(report.samples),
                runtime::to_string(options.method).c_str());
  }
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand("quantize", "Post-training int8 quantization of an ONNX model (QDQ output)");
  cmd->add_option("model", args->model, "fp32 ONNX model")->required();
  cmd->add_option("--calib", args->calib, "Calibration faces: a folder of images, a .rec or an InsightFace .bin")
      ->required();
  cmd->add_option("--out", args->out, "QDQ ONNX file to write")->required();
  cmd->add_option("--method", args->method, "Activation ranges: mse (default), percentile, entropy or minmax");
  cmd->add_option("--percentile", args->percentile, "Percentile of |x| for --method percentile (default 99.99)");
  cmd->add_option("--keep-fp32", args->keep_fp32, "Convolutions left in fp32: first, last, depthwise and/or node names (commas)");
  cmd->add_option("--ops", args->ops, "Operator types to quantize: Conv (default) and/or Gemm (commas)");
  cmd->add_option("--samples", args->samples, "Calibration faces to use (default 256)");
  cmd->add_option("--batch", args->batch, "Calibration batch size (default 16)");
  cmd->add_option("--mean", args->mean, "Input mean, one or three values (default: the model's sidecar, else 127.5)");
  cmd->add_option("--std", args->std, "Input std, one or three values (default: the model's sidecar, else 127.5)");
  cmd->add_flag("--bgr", args->bgr, "The model takes BGR input");
  cmd->add_flag("--no-bias-correction", args->no_bias_correction,
                "Keep the biases as they are (default: each absorbs the mean shift quantization causes)");
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
