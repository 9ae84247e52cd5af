// Photos from request bodies and the faces on them.
#include "face_input.hpp"

#include "arcforge/pipeline/face_json.hpp"

#include <algorithm>
#include <cmath>

#include "arcforge/common/error.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/pipeline/quality.hpp"
#include "arcforge/serve/http_error.hpp"
#include "arcforge/serve/request_parsing.hpp"

namespace arcforge::serve {

const pipeline::FaceAnalyzer& require_models(const Service& service, const std::string& what) {
  if (!service.analyzer) throw HttpError(422, "this server was started without face models: " + what);
  return *service.analyzer;
}

pipeline::Photo read_photo(const Service& service, const nlohmann::json& body, const std::string& field) {
  const pipeline::FaceAnalyzer& analyzer = require_models(service, "send \"embedding\"");
  std::string bytes = decode_image_field(required_string(body, field), field);  // the body limit already applied
  try {
    return analyzer.decode_photo(std::move(bytes), field);
  } catch (const InputError& e) {
    throw HttpError(422, e.what());
  }
}

pipeline::Face largest_face(const Service& service, const pipeline::Photo& photo, const std::string& field) {
  const pipeline::FaceAnalyzer& analyzer = require_models(service, "send \"embedding\"");
  try {
    return analyzer.analyze_largest(photo);
  } catch (const InputError& e) {
    throw HttpError(422, e.what());
  }
}

std::vector<pipeline::Face> faces_largest_first(const Service& service, const pipeline::Photo& photo,
                                                const std::string& field, size_t max_faces, bool embed) {
  const pipeline::FaceAnalyzer& analyzer = require_models(service, "send \"embedding\"");
  std::vector<pipeline::Face> faces;
  try {
    faces = analyzer.detect(photo);
    if (faces.empty()) throw HttpError(422, field + ": no face found");
    std::stable_sort(faces.begin(), faces.end(), [](const pipeline::Face& a, const pipeline::Face& b) {
      return a.detection.box.area() > b.detection.box.area();
    });
    if (max_faces > 0 && faces.size() > max_faces) faces.resize(max_faces);
    if (embed) analyzer.complete(photo, faces);
  } catch (const InputError& e) {  // e.g. a detector without landmarks cannot align
    throw HttpError(422, field + ": " + e.what());
  }
  return faces;
}

nlohmann::json face_summary(const pipeline::Face& face, bool with_landmarks, bool with_quality) {
  return pipeline::face_to_json(face, {.landmarks = with_landmarks, .quality = with_quality, .embedding = false});
}

}  // namespace arcforge::serve
