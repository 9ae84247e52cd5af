// pipeline_bench: the face pipeline end to end on real photos, stage by stage:
//   decode (image::decode_file) -> detector preprocess (letterbox + planar float input) -> detector
//   model (runtime::Model::run, SCRFD at 640x640) -> detector decode + NMS (decode_scrfd, unletterbox,
//   non_maximum_suppression, select_faces) -> align (align_face, every face found) -> recognizer
//   (Recognizer::embed, one crop per call; its time includes the crop -> float tensor copy).
// Every .jpg/.png of the photo folder is run each round; one untimed warm-up round builds the runtime's
// plans and checks that the stages put together here find the same faces as load_detector()->detect.
// The best (fastest) of --rounds timed rounds is reported.
// With --reduced, each precision also runs with FaceAnalyzer's reduced decoding (pipeline/photo.hpp):
// decode = read + FaceAnalyzer::decode_photo (JPEGs at M/8 where the detector input allows), detector
// decode includes the map back to full-size coordinates, align = FaceAnalyzer::align (which decodes
// the file again, finer, for a face too small for the reduced pixels).
//
// "The same pipeline on ONNX Runtime": after each of our rounds, ORT's model times per call are
// measured (node run_model.js --bench 20, same thread count, random 1x3x640x640 and 1x3x112x112
// inputs; the best median is kept), so both sides see the same machine load. ORT's pipeline time is
// our non-model stages (of the first precision run) + ORT's model times x the calls we made.
//
//   pipeline_bench [--photos DIR] [--detector F] [--recognizer F] [--spec S] [--threads 2] [--rounds 3]
//                  [--precision fp32,bf16,int8] [--size 640] [--ort-script run_model.js | --ort-script none]
//                  [--reduced]
//
// Prints a markdown table (ms per round and share per stage, faces/s, ratios) after a machine line.
// The machine line carries OMP_WAIT_POLICY when set: on a loaded machine oneDNN's OpenMP threads
// spinning at barriers (libgomp's default) can cost several times the work itself.
// A precision the runtime rejects (parse_precision, or a model without QDQ nodes for int8) gets a
// line saying why instead of a column.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "bench_machine.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/pipeline/alignment.hpp"
#include "arcforge/pipeline/detection.hpp"
#include "arcforge/pipeline/detector.hpp"
#include "arcforge/pipeline/face_analyzer.hpp"
#include "arcforge/pipeline/recognizer.hpp"
#include "arcforge/runtime/model.hpp"

using namespace arcforge;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

enum Stage { kDecode, kLetterbox, kDetectorModel, kDetectorDecode, kAlign, kRecognizer, kStages };
const char* const kStageNames[kStages] = {"decode",        "detector preprocess (letterbox)",
                                          "detector model", "detector decode + NMS",
                                          "align",          "recognizer model"};

struct Args {
  std::string photos, detector, recognizer;
  std::string spec = "bgr,mean=127.5,std=128";  // paddle MobileFaceNet's input
  int threads = 2, rounds = 3, size = 640;
  std::vector<std::string> precisions{"fp32"};
  bool reduced = false;  // also run each precision with reduced decoding
  std::string ort_script = std::string(ARCFORGE_SOURCE_DIR) + "/tests/runtime/node/run_model.js";
};

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, sep);) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

Args parse_args(int argc, char** argv) {
  Args a;
  const char* env = std::getenv("ARCFORGE_SHARED_DIR");
  const std::string shared = env ? env : std::string(ARCFORGE_SOURCE_DIR) + "/../shared";
  a.photos = shared + "/faces/deepface";
  a.detector = shared + "/models/scrfd_500m_bnkps.onnx";
  a.recognizer = shared + "/models/paddle_mobilefacenet128.onnx";
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--reduced") {
      a.reduced = true;
      continue;
    }
    if (i + 1 >= argc) throw ConfigError("pipeline_bench: " + key + " needs a value");
    const std::string value = argv[++i];
    if (key == "--photos") a.photos = value;
    else if (key == "--detector") a.detector = value;
    else if (key == "--recognizer") a.recognizer = value;
    else if (key == "--spec") a.spec = value;
    else if (key == "--threads") a.threads = std::stoi(value);
    else if (key == "--rounds") a.rounds = std::max(1, std::stoi(value));
    else if (key == "--size") a.size = std::stoi(value);
    else if (key == "--precision") a.precisions = split(value, ',');
    else if (key == "--ort-script") a.ort_script = value == "none" ? "" : value;
    else throw ConfigError("pipeline_bench: unknown option " + key);
  }
  return a;
}

std::vector<std::string> photo_files(const std::string& dir) {
  if (!fs::is_directory(dir)) throw InputError(dir + ": no such photo folder (set ARCFORGE_SHARED_DIR or --photos)");
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png")) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw InputError(dir + ": no .jpg or .png photos");
  return files;
}

// SCRFD outputs of a batch-1 run grouped per stride (finest = most rows first), as the detector
// itself groups them: by channel count, never by name.
std::vector<pipeline::StrideOutputs> scrfd_strides(const std::vector<runtime::Tensor>& outputs, int size,
                                                   int& anchors, const std::string& path) {
  std::map<int64_t, std::vector<const runtime::Tensor*>> by_channels;
  for (const auto& t : outputs) by_channels[t.shape.back()].push_back(&t);
  auto rows = [](const runtime::Tensor* t) { return t->shape[t->shape.size() - 2]; };
  for (auto& [channels, group] : by_channels) {
    std::stable_sort(group.begin(), group.end(),
                     [&](const runtime::Tensor* a, const runtime::Tensor* b) { return rows(a) > rows(b); });
  }
  const size_t strides = by_channels[1].size();
  if (strides == 0 || by_channels[4].size() != strides || by_channels[10].size() != strides) {
    throw InputError(path + ": outputs are not SCRFD's score/bbox/kps per stride (with keypoints)");
  }
  std::vector<pipeline::StrideOutputs> out;
  for (size_t i = 0; i < strides; ++i) {
    const int stride = 8 << i;
    const int64_t cells = static_cast<int64_t>(size / stride) * (size / stride);
    anchors = static_cast<int>(rows(by_channels[1][i]) / cells);
    out.push_back({stride, by_channels[1][i]->data.data(), nullptr, by_channels[4][i]->data.data(),
                   by_channels[10][i]->data.data()});
  }
  return out;
}

struct Round {
  double ms[kStages] = {};
  int faces = 0, detector_calls = 0, recognizer_calls = 0;
  double total() const {
    double t = 0;
    for (double m : ms) t += m;
    return t;
  }
};

class Pipeline {
 public:
  Pipeline(const Args& args, runtime::Precision precision, bool reduced) : args_(args) {
    runtime::Options options;
    options.threads = args.threads;
    options.precision = precision;
    if (reduced) {
      pipeline::AnalyzerOptions analyzer_options;
      analyzer_options.runtime = options;
      analyzer_options.detector = detector_options_;
      analyzer_options.detector.input_width = analyzer_options.detector.input_height = args.size;
      analyzer_ = std::make_unique<pipeline::FaceAnalyzer>(args.detector, "", analyzer_options);
    }
    detector_model_ = std::make_unique<runtime::Model>(runtime::Model::load(args.detector, options));
    detector_options_.input_width = detector_options_.input_height = args.size;
    reference_detector_ = pipeline::load_detector(args.detector, detector_options_, options);
    recognizer_ = std::make_unique<pipeline::Recognizer>(
        pipeline::Recognizer::load(args.recognizer, pipeline::parse_preprocess_spec(args.spec), options));
  }

  // One pass over every photo. With `check`, the faces must equal load_detector()->detect's.
  Round run(const std::vector<std::string>& files, bool check) const {
    Round r;
    auto lap = [](Clock::time_point& t) {
      const Clock::time_point now = Clock::now();
      const double ms = std::chrono::duration<double, std::milli>(now - t).count();
      t = now;
      return ms;
    };
    for (const auto& file : files) {
      Clock::time_point t = Clock::now();
      const pipeline::Photo photo = analyzer_ ? analyzer_->decode_photo(image::read_image_file(file), file)
                                              : pipeline::Photo::from_image(image::decode_file(file));
      r.ms[kDecode] += lap(t);

      runtime::Tensor input;
      input.shape = {1, 3, args_.size, args_.size};
      input.data.reserve(static_cast<size_t>(input.numel()));
      const pipeline::Letterbox lb = pipeline::letterbox(photo.pixels, args_.size, args_.size);
      pipeline::append_planar(lb.canvas, /*bgr=*/false, 127.5f, 128.0f, input.data);
      r.ms[kLetterbox] += lap(t);

      const std::vector<runtime::Tensor> outputs = detector_model_->run({input});
      ++r.detector_calls;
      r.ms[kDetectorModel] += lap(t);

      int anchors = 0;
      const auto strides = scrfd_strides(outputs, args_.size, anchors, args_.detector);
      std::vector<pipeline::Detection> faces =
          pipeline::decode_scrfd(strides, args_.size, args_.size, anchors, detector_options_.score_threshold);
      pipeline::unletterbox(faces, lb.scale);
      faces = pipeline::non_maximum_suppression(std::move(faces), detector_options_.nms_iou);
      faces = pipeline::select_faces(std::move(faces), detector_options_, photo.pixels.width, photo.pixels.height);
      if (check) check_against_detector(file, photo.pixels, faces);
      if (photo.reduced()) {
        for (auto& face : faces) {
          for (auto& p : face.landmarks) p = photo.to_full(p);
        }
      }
      r.ms[kDetectorDecode] += lap(t);

      std::vector<image::Image> crops;
      for (const auto& face : faces) {
        crops.push_back(analyzer_ ? analyzer_->align(photo, face, 112, 112) : pipeline::align_face(photo.pixels, face.landmarks));
      }
      r.ms[kAlign] += lap(t);

      for (const auto& crop : crops) {
        std::vector<float> embedding = recognizer_->embed({crop}).front();
        pipeline::l2_normalize(embedding);
        ++r.recognizer_calls;
      }
      r.ms[kRecognizer] += lap(t);
      r.faces += static_cast<int>(faces.size());
    }
    return r;
  }

 private:
  void check_against_detector(const std::string& file, const image::Image& photo,
                              const std::vector<pipeline::Detection>& faces) const {
    const std::vector<pipeline::Detection> expected = reference_detector_->detect(photo);
    bool same = expected.size() == faces.size();
    for (size_t i = 0; same && i < faces.size(); ++i) {
      same = std::abs(expected[i].box.x1 - faces[i].box.x1) < 1e-3f && std::abs(expected[i].box.y2 - faces[i].box.y2) < 1e-3f;
    }
    if (!same) {
      throw InputError(file + ": the benchmark's stages found " + std::to_string(faces.size()) +
                       " faces, load_detector()->detect " + std::to_string(expected.size()) +
                       ": the stages are not the pipeline");
    }
  }

  const Args& args_;
  pipeline::DetectorOptions detector_options_;
  std::unique_ptr<runtime::Model> detector_model_;
  std::unique_ptr<pipeline::Detector> reference_detector_;
  std::unique_ptr<pipeline::Recognizer> recognizer_;
  std::unique_ptr<pipeline::FaceAnalyzer> analyzer_;  // reduced decoding only
};

// ONNX Runtime's median ms per call of `model` on a random input of `shape` (e.g. 1x3x640x640).
class OrtTimer {
 public:
  OrtTimer(std::string script, int threads)
      : script_(std::move(script)), threads_(threads),
        out_(fs::temp_directory_path() / ("pipeline_bench_ort_" + std::to_string(::getpid()))) {}
  ~OrtTimer() {
    std::error_code ec;
    fs::remove_all(out_, ec);
  }
  double median_ms(const std::string& model, const std::string& shape) const {
    const std::string cmd = "node '" + script_ + "' '" + model + "' '" + out_.string() + "' random:" + shape +
                            " --threads " + std::to_string(threads_) + " --bench 20 2>&1";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (!pipe) throw InputError(script_ + ": cannot start node");
    std::string text;
    char buffer[4096];
    for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) text.append(buffer, n);
    const int status = ::pclose(pipe);
    const size_t key = text.find("\"median_ms\":");
    if (status != 0 || key == std::string::npos) throw InputError(script_ + " on " + model + " failed: " + text);
    return std::stod(text.substr(key + 12));
  }

 private:
  std::string script_;
  int threads_;
  fs::path out_;
};

struct Column {
  std::string name;
  Round round;
};

void print_table(bool has_ort, const std::vector<Column>& columns, size_t photos) {
  std::printf("\n| stage | %s |\n| --- |", [&] {
    std::string header;
    for (const auto& c : columns) header += (header.empty() ? "" : " | ") + c.name + " ms (share)";
    return header;
  }().c_str());
  for (size_t i = 0; i < columns.size(); ++i) std::printf(" --- |");
  std::printf("\n");
  for (int s = 0; s < kStages; ++s) {
    std::printf("| %s |", kStageNames[s]);
    for (const auto& c : columns) std::printf(" %.1f (%.0f%%) |", c.round.ms[s], 100 * c.round.ms[s] / c.round.total());
    std::printf("\n");
  }
  std::printf("| **total per round** |");
  for (const auto& c : columns) std::printf(" **%.1f** |", c.round.total());
  std::printf("\n| faces/s |");
  for (const auto& c : columns) std::printf(" %.1f |", 1000.0 * c.round.faces / c.round.total());
  std::printf("\n| photos/s |");
  for (const auto& c : columns) std::printf(" %.1f |", 1000.0 * static_cast<double>(photos) / c.round.total());
  if (has_ort) {
    const double ort_total = columns.back().round.total();
    std::printf("\n| ORT pipeline time / this column's (> 1: faster than ORT) |");
    for (const auto& c : columns) std::printf(" %.2f |", ort_total / c.round.total());
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse_args(argc, argv);
    const std::vector<std::string> files = photo_files(args.photos);
    const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
    std::printf("machine: %s, %u cores, load average before: %s, OMP_WAIT_POLICY=%s\n",
                bench::cpu_model_name().c_str(), std::thread::hardware_concurrency(),
                bench::load_average().c_str(), wait_policy ? wait_policy : "(unset)");
    std::printf("pipeline: %zu photos of %s, decode -> SCRFD %s at %dx%d -> align every face -> %s (%s, one crop per "
                "call); %d threads; best of %d rounds after a warm-up round\n",
                files.size(), args.photos.c_str(), fs::path(args.detector).filename().c_str(), args.size, args.size,
                fs::path(args.recognizer).filename().c_str(), args.spec.c_str(), args.threads, args.rounds);

    const bool has_ort = !args.ort_script.empty();
    std::unique_ptr<OrtTimer> ort_timer;
    if (has_ort) ort_timer = std::make_unique<OrtTimer>(args.ort_script, args.threads);
    double ort_detector_ms = 1e300, ort_recognizer_ms = 1e300;
    std::vector<Column> columns;
    std::vector<std::pair<std::string, bool>> runs;  // (precision, reduced decoding)
    for (const auto& name : args.precisions) {
      runs.push_back({name, false});
      if (args.reduced) runs.push_back({name, true});
    }
    for (const auto& [name, reduced] : runs) {
      const std::string column = "arcforge " + name + (reduced ? " reduced decode" : "");
      try {
        const runtime::Precision precision = runtime::parse_precision(name);
        const Pipeline pipeline(args, precision, reduced);
        pipeline.run(files, /*check=*/true);
        Round best;
        for (int r = 0; r < args.rounds; ++r) {
          const Round round = pipeline.run(files, false);
          if (r == 0 || round.total() < best.total()) best = round;
          if (has_ort) {  // right after our round, under the same load
            const std::string side = std::to_string(args.size);
            ort_detector_ms = std::min(ort_detector_ms, ort_timer->median_ms(args.detector, "1x3x" + side + "x" + side));
            ort_recognizer_ms = std::min(ort_recognizer_ms, ort_timer->median_ms(args.recognizer, "1x3x112x112"));
          }
        }
        columns.push_back({column, best});
        std::printf("%s: %d faces per round, %d detector calls, %d recognizer calls, best round %.1f ms\n",
                    column.c_str(), best.faces, best.detector_calls, best.recognizer_calls, best.total());
      } catch (const Error& e) {
        std::printf("%s: not run: %s\n", column.c_str(), e.what());
      }
    }
    if (columns.empty()) throw ConfigError("pipeline_bench: no precision could be run");

    if (has_ort) {
      // ORT: our non-model stages (the fp32 column's, the first one run) + ORT's model time per call x calls.
      Round ort = columns.front().round;
      ort.ms[kDetectorModel] = ort_detector_ms * ort.detector_calls;
      ort.ms[kRecognizer] = ort_recognizer_ms * ort.recognizer_calls;
      columns.push_back({"ONNX Runtime fp32", ort});
      std::printf("ONNX Runtime fp32: %.2f ms per detector call (1x3x%dx%d), %.2f ms per recognizer call (1x3x112x112), "
                  "best run_model.js --bench medians; non-model stages are %s's\n",
                  ort_detector_ms, args.size, args.size, ort_recognizer_ms, columns.front().name.c_str());
      for (size_t i = 0; i + 1 < columns.size(); ++i) {
        const Round& ours = columns[i].round;
        std::printf("%s: detector model %.2f ms/call (ORT / this %.2f), recognizer model %.2f ms/call (ORT / this %.2f)\n",
                    columns[i].name.c_str(), ours.ms[kDetectorModel] / ours.detector_calls,
                    ort_detector_ms * ours.detector_calls / ours.ms[kDetectorModel],
                    ours.ms[kRecognizer] / std::max(1, ours.recognizer_calls),
                    ort_recognizer_ms * ours.recognizer_calls / ours.ms[kRecognizer]);
      }
    }
    print_table(has_ort, columns, files.size());
    std::printf("\nload average after: %s\n", bench::load_average().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipeline_bench: %s\n", e.what());
    return 1;
  }
}
