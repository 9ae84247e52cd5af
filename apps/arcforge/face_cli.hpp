#pragma once
// What the face commands (detect, align, embed, verify, analyze, eval with a detector) share: how
// models are chosen and configured from the command line, and how faces print as JSON.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "arcforge/pipeline/face_analyzer.hpp"

namespace arcforge::cli {

// verify's default cosine threshold: the 10-fold threshold of paddle_mobilefacenet128 (flip-add) on LFW View 2
// through this pipeline (docs/pipeline.md). Other recognizers need their own: calibrate with eval.
constexpr float kDefaultVerifyThreshold = 0.29f;

struct FaceModelArgs {
  std::string pack, detector, recognizer, recognizer_spec;
  std::string precision = "fp32";
  std::string det_precision;  // empty: --precision
  int threads = 0;
  std::string det_size = "640x640";
  float det_threshold = 0.5f;
  float nms = 0.4f;
  int max_faces = 0;
  float min_face_size = 0;
  bool flip = false;
  std::string min_quality;
  int64_t max_pixels = 40'000'000;
  bool full_size_decode = false;
  bool ignore_orientation = false;
};

// Adds --pack, --detector, --recognizer, --recognizer-spec, --det-size, --det-thresh, --nms,
// --max-faces, --min-face-size, --min-quality, --max-pixels, --full-size-decode, --ignore-orientation,
// --flip when `embeds`, and --precision/--threads unless the command has its own (`runtime_options`
// false).
void add_face_model_options(CLI::App* cmd, FaceModelArgs& args, bool embeds, bool runtime_options = true);

// Builds the analyzer. `need_recognizer`: a recognizer is required (from --pack or --recognizer).
pipeline::FaceAnalyzer make_analyzer(const FaceModelArgs& args, bool need_detector, bool need_recognizer);

// How a command spreads `photos` over the cores (--threads, default all): several photos run one per
// core (parallel_for_each) with single-threaded models, as `eval` does; a single photo gets every
// core inside its model calls. `models` is `args` with the runtime threads that implies.
struct PhotoWorkers {
  int workers = 1;
  FaceModelArgs models;
};
PhotoWorkers photo_workers(const FaceModelArgs& args, size_t photos);

// `arcforge eval` on photos: a pair list scored through detection, alignment and a recognizer.
struct FaceEvalArgs {
  FaceModelArgs models;
  std::vector<std::string> pair_lists;
  std::string images;         // image root (default: the list's folder)
  std::string face = "center";
  bool json = false;
};
// `standalone` false: the training build's eval command, which has its own --threads, --precision
// and --root/--images.
void add_face_eval_options(CLI::App* cmd, FaceEvalArgs& args, bool standalone);
// True when the arguments ask for the photo pipeline (a recognizer or a pack was given).
bool wants_face_eval(const FaceEvalArgs& args);
void run_face_eval(const FaceEvalArgs& args);
void add_face_eval_command(CLI::App& app);  // `eval` of a build without the training side

nlohmann::json face_json(const pipeline::Face& face, bool with_quality, bool with_embedding);

}  // namespace arcforge::cli
