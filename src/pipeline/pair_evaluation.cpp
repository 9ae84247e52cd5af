// Pair-list evaluation on photos: parallel detect/align/embed of each file once, a fallback
// alignment for photos without a detected face, then the verification protocol.
#include "arcforge/pipeline/pair_evaluation.hpp"

#include <chrono>
#include <optional>

#include "arcforge/common/error.hpp"
#include "arcforge/common/parallel.hpp"
#include "arcforge/eval/pairs.hpp"

namespace arcforge::pipeline {

FaceChoice parse_face_choice(const std::string& text) {
  if (text == "center" || text == "centre") return FaceChoice::centre;
  if (text == "largest") return FaceChoice::largest;
  throw ConfigError("--face: expected center or largest, got '" + text + "'");
}

namespace {

struct PhotoResult {
  std::vector<float> embedding;
  std::optional<Landmarks5> relative_landmarks;  // landmarks / photo size, when a face was found
  int width = 0, height = 0;
};

const Face& choose(const std::vector<Face>& faces, FaceChoice choice, int width, int height) {
  size_t best = 0;
  double best_value = 0;
  for (size_t i = 0; i < faces.size(); ++i) {
    const Box& b = faces[i].detection.box;
    double value = 0;
    if (choice == FaceChoice::largest) {
      value = b.area();
    } else {
      const double dx = (b.x1 + b.x2) / 2.0 - width / 2.0, dy = (b.y1 + b.y2) / 2.0 - height / 2.0;
      value = -(dx * dx + dy * dy);
    }
    if (i == 0 || value > best_value) best = i, best_value = value;
  }
  return faces[best];
}

Landmarks5 scaled(const Landmarks5& relative, int width, int height) {
  Landmarks5 out;
  for (int i = 0; i < 5; ++i) out[i] = {relative[i].x * width, relative[i].y * height};
  return out;
}

}  // namespace

PairEvalResult evaluate_pair_list(const FaceAnalyzer& analyzer, const data::PairList& pairs,
                                  const PairEvalOptions& options) {
  if (analyzer.detector() == nullptr || analyzer.recognizer() == nullptr) {
    throw ConfigError("evaluating photos needs both a detector and a recognizer");
  }
  if (!analyzer.detector()->has_landmarks()) {
    throw ConfigError(std::string("the ") + to_string(analyzer.detector()->kind()) +
                      " detector gives no landmarks, so faces cannot be aligned for recognition");
  }
  const auto start = std::chrono::steady_clock::now();
  const size_t count = pairs.files.size();
  if (count == 0 || pairs.pairs.empty()) throw InputError("the pair list has no pairs");
  std::vector<PhotoResult> photos(count);
  parallel_for_each(count, options.workers, [&](size_t i) {
    const Photo photo = analyzer.load_photo(pairs.files[i]);
    PhotoResult& r = photos[i];
    r.width = photo.full_width;
    r.height = photo.full_height;
    std::vector<Face> faces = analyzer.detect(photo);
    if (faces.empty()) return;
    std::vector<Face> chosen{choose(faces, options.choice, r.width, r.height)};
    analyzer.complete(photo, chosen);
    r.embedding = std::move(chosen.front().embedding);
    Landmarks5 rel;
    for (int k = 0; k < 5; ++k) {
      rel[k] = {chosen.front().detection.landmarks[k].x / r.width, chosen.front().detection.landmarks[k].y / r.height};
    }
    r.relative_landmarks = rel;
  });

  // Photos without a face: the mean relative landmarks of the others, scaled to the photo.
  PairEvalResult result;
  Landmarks5 mean{};
  int64_t found = 0;
  for (const auto& r : photos) {
    if (!r.relative_landmarks) continue;
    for (int k = 0; k < 5; ++k) {
      mean[k].x += (*r.relative_landmarks)[k].x;
      mean[k].y += (*r.relative_landmarks)[k].y;
    }
    ++found;
  }
  for (size_t i = 0; i < count; ++i) {
    if (photos[i].relative_landmarks) continue;
    result.no_face.push_back(pairs.files[i]);
    if (found == 0) throw InputError(pairs.files[i] + ": no face found, and none in any other photo of the list");
    Landmarks5 fallback;
    for (int k = 0; k < 5; ++k) fallback[k] = {mean[k].x / found, mean[k].y / found};
    const image::Image photo = analyzer.load_photo(pairs.files[i], /*allow_reduced=*/false).pixels;
    const image::Image crop = align_face(photo, scaled(fallback, photo.width, photo.height), analyzer.crop_width(),
                                         analyzer.crop_height());
    photos[i].embedding = analyzer.embed_aligned({crop}).front();
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.images = static_cast<int64_t>(count);

  const int64_t dim = static_cast<int64_t>(photos.front().embedding.size());
  std::vector<float> matrix;
  matrix.reserve(count * static_cast<size_t>(dim));
  for (const auto& r : photos) matrix.insert(matrix.end(), r.embedding.begin(), r.embedding.end());
  result.scores = eval::pair_scores(matrix.data(), static_cast<int64_t>(count), dim, pairs.pairs);
  result.report = eval::evaluate_verification(result.scores, pairs.same, options.verification);
  return result;
}

}  // namespace arcforge::pipeline
