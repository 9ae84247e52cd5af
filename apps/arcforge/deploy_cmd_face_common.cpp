// Model selection and JSON for the face commands (see face_cli.hpp).
#include <sstream>

#include "arcforge/common/error.hpp"
#include "arcforge/common/parallel.hpp"
#include "arcforge/pipeline/face_json.hpp"
#include "face_cli.hpp"

namespace arcforge::cli {

void add_face_model_options(CLI::App* cmd, FaceModelArgs& a, bool embeds, bool runtime_options) {
  cmd->add_option("--pack", a.pack, "Model pack folder: a detector and a recognizer ONNX, told apart by shape");
  cmd->add_option("--detector", a.detector, "Detector ONNX (SCRFD, YuNet or RFB)");
  if (embeds) {
    cmd->add_option("--recognizer", a.recognizer, "Recognizer ONNX ([N,3,112,112] -> [N,E])");
    cmd->add_option("--recognizer-spec", a.recognizer_spec,
                    "Recognizer preprocessing, e.g. 'bgr,mean=127.5,std=128' or 'imagenet' (default: the "
                    "model's .json sidecar, else InsightFace's rgb,mean=127.5,std=127.5)");
    cmd->add_flag("--flip", a.flip, "Flip-add embeddings (embedding of the crop + of its mirror image)");
  }
  if (runtime_options) {
    cmd->add_option("--precision", a.precision,
                    "Runtime precision: fp32 | bf16 | auto (bf16 where faster here) | int8 | int8+bf16 | int8+auto "
                    "(int8+bf16 where faster here; int8 needs a quantized model)");
    cmd->add_option("--threads", a.threads, "Runtime threads (default all cores)");
  }
  cmd->add_option("--det-precision", a.det_precision,
                  "The detector's precision when it differs from --precision (e.g. fp32 next to an int8 recognizer)");
  cmd->add_option("--det-size", a.det_size, "Detector input WxH for models with a dynamic size (multiple of 32)");
  cmd->add_option("--det-thresh", a.det_threshold, "Detection score threshold");
  cmd->add_option("--nms", a.nms, "NMS IoU threshold");
  cmd->add_option("--max-faces", a.max_faces, "Keep at most N faces per image (largest, most central first; 0 = all)");
  cmd->add_option("--min-face-size", a.min_face_size, "Drop faces whose shorter box side is below this (pixels)");
  cmd->add_option("--min-quality", a.min_quality,
                  "Quality gate, e.g. 'score=0.6,size=40,yaw=45,pitch=30,blur=50': failing faces are flagged");
  cmd->add_option("--max-pixels", a.max_pixels, "Refuse photos with more pixels than this (before decoding)");
  cmd->add_flag("--full-size-decode", a.full_size_decode,
                "Decode every photo at full size (default: large JPEGs at 1/2-1/8, as sharp as each face needs)");
  cmd->add_flag("--ignore-orientation", a.ignore_orientation,
                "Take photos as stored (default: JPEGs and PNGs upright as their EXIF orientation says, like cv2.imread)");
}

namespace {

std::pair<int, int> parse_size(const std::string& text) {
  int w = 0, h = 0;
  char x = 0;
  std::stringstream s(text);
  if (!(s >> w >> x >> h) || x != 'x' || w < 32 || h < 32 || w > 8192 || h > 8192 || !s.eof()) {
    throw ConfigError("--det-size: expected WxH such as 640x640, got '" + text + "'");
  }
  return {w, h};
}

}  // namespace

pipeline::FaceAnalyzer make_analyzer(const FaceModelArgs& a, bool need_detector, bool need_recognizer) {
  std::string detector = a.detector, recognizer = a.recognizer;
  if (!a.pack.empty()) {
    const pipeline::ModelPack pack = pipeline::find_model_pack(a.pack);
    if (detector.empty()) detector = pack.detector;
    if (recognizer.empty()) recognizer = pack.recognizer;
  }
  if (need_detector && detector.empty()) throw ConfigError("give a detector: --pack DIR or --detector MODEL.onnx");
  if (need_recognizer && recognizer.empty()) {
    throw ConfigError("give a recognizer: --pack DIR or --recognizer MODEL.onnx");
  }
  if (!need_recognizer) recognizer.clear();
  pipeline::AnalyzerOptions o;
  o.runtime.threads = a.threads;
  o.runtime.precision = runtime::parse_precision(a.precision);
  if (!a.det_precision.empty()) {
    o.detector_runtime = o.runtime;
    o.detector_runtime->precision = runtime::parse_precision(a.det_precision);
  }
  std::tie(o.detector.input_width, o.detector.input_height) = parse_size(a.det_size);
  o.detector.score_threshold = a.det_threshold;
  o.detector.nms_iou = a.nms;
  o.detector.max_faces = a.max_faces;
  o.detector.min_face_size = a.min_face_size;
  if (!a.recognizer_spec.empty()) o.recognizer_spec = pipeline::parse_preprocess_spec(a.recognizer_spec);
  o.flip = a.flip;
  if (!a.min_quality.empty()) o.quality_gate = pipeline::parse_quality_gate(a.min_quality);
  if (a.max_pixels < 1) throw ConfigError("--max-pixels must be positive");
  o.decode_limits.max_pixels = static_cast<uint64_t>(a.max_pixels);
  o.reduced_decoding = !a.full_size_decode;
  o.apply_exif_orientation = !a.ignore_orientation;
  return pipeline::FaceAnalyzer(need_detector ? detector : "", recognizer, o);
}

PhotoWorkers photo_workers(const FaceModelArgs& args, size_t photos) {
  PhotoWorkers p;
  p.models = args;
  if (photos > 1) {
    p.workers = worker_count(args.threads);
    p.models.threads = 1;
  }
  return p;
}

nlohmann::json face_json(const pipeline::Face& face, bool with_quality, bool with_embedding) {
  return pipeline::face_to_json(face, {.landmarks = true, .quality = with_quality, .embedding = with_embedding});
}

}  // namespace arcforge::cli
